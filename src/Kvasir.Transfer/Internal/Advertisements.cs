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
    private readonly ConcurrentDictionary<ulong, Advertisement> _byId = new();
    private long _nextId;

    public Advertisement Add(int connId, Region region, long offset, long size)
    {
        var a = new Advertisement((ulong)Interlocked.Increment(ref _nextId), RandomToken(), connId, region, offset, size);
        _byId[a.Id] = a;
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
