using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Kvasir.Transfer.Internal;

/// <summary>A window <c>[Offset, Offset+Size)</c> of a region offered to one connection, with its random token.</summary>
internal sealed record Advertisement(ulong Id, UInt128 Token, int ConnId, Region Region, long Offset, long Size);

/// <summary>
/// The engine's advertisements. Ids are unique in the engine and never reused; a lookup matches the id,
/// the connection the slice came on and the token (compared in constant time), or finds nothing.
/// </summary>
internal sealed class Advertisements
{
    /// <summary>
    /// Window advertisements kept per connection (docs/transfer.md § Advertisements): a connection that advertises a
    /// window per request would otherwise grow the table for as long as it lives. The oldest goes first; a transfer
    /// naming it is refused NOT_ADVERTISED. The Python engine keeps the same number (regions.MAX_ADVERTS_PER_CONNECTION).
    /// </summary>
    public const int MaxPerConnection = 1 << 16;

    private readonly ConcurrentDictionary<ulong, Advertisement> _byId = new();
    private readonly ConcurrentDictionary<int, ConcurrentQueue<ulong>> _windowsOf = new();
    private readonly int _maxPerConnection;
    private long _nextId;

    public Advertisements(int maxPerConnection = MaxPerConnection) => _maxPerConnection = maxPerConnection;

    /// <summary>Advertisements in the table (for tests and metrics).</summary>
    public int Count => _byId.Count;

    /// <summary>
    /// A new advertisement. A window's (<paramref name="window"/>) counts against its connection's
    /// <see cref="MaxPerConnection"/> most recent, which stay valid; a kv buffer's lives until the buffer goes.
    /// </summary>
    public Advertisement Add(int connId, Region region, long offset, long size, bool window = false)
    {
        var a = new Advertisement((ulong)Interlocked.Increment(ref _nextId), RandomToken(), connId, region, offset, size);
        _byId[a.Id] = a;
        if (window)
        {
            var order = _windowsOf.GetOrAdd(connId, _ => new ConcurrentQueue<ulong>());
            order.Enqueue(a.Id);
            while (order.Count > _maxPerConnection && order.TryDequeue(out ulong oldest)) _byId.TryRemove(oldest, out _);
        }
        return a;
    }

    public Advertisement? Find(int connId, ulong id, UInt128 token)
    {
        if (!_byId.TryGetValue(id, out var a) || a.ConnId != connId) return null;
        Span<byte> expected = stackalloc byte[16], actual = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128LittleEndian(expected, a.Token);
        BinaryPrimitives.WriteUInt128LittleEndian(actual, token);
        return CryptographicOperations.FixedTimeEquals(expected, actual) ? a : null;
    }

    public void Remove(ulong id) => _byId.TryRemove(id, out _);

    /// <summary>Withdraws every advertisement of a region (it is being deregistered).</summary>
    public void WithdrawRegion(Region region)
    {
        foreach (var a in _byId.Values)
            if (a.Region == region) _byId.TryRemove(a.Id, out _);
    }

    /// <summary>Withdraws every advertisement made for a connection (it closed).</summary>
    public void WithdrawConnection(int connId)
    {
        _windowsOf.TryRemove(connId, out _);
        foreach (var a in _byId.Values)
            if (a.ConnId == connId) _byId.TryRemove(a.Id, out _);
    }

    public static UInt128 RandomToken()
    {
        Span<byte> b = stackalloc byte[16];
        RandomNumberGenerator.Fill(b);
        return BinaryPrimitives.ReadUInt128LittleEndian(b);
    }
}
