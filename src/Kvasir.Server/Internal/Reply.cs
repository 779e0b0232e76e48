using System.Buffers;
using Kvasir.Storage;

namespace Kvasir.Server.Internal;

/// <summary>
/// A reply waiting in a connection's send queue: header and metadata in a pooled buffer, and for
/// GET the leased values whose bytes follow straight from the arena. The writer releases the leases
/// once the bytes are on the wire (or the connection is dead); nobody else may.
/// </summary>
internal sealed class Reply
{
    private Reply(byte[] buffer, int length, ValueLease?[]? leases, int leaseCount, bool closeAfter)
    {
        Buffer = buffer;
        Length = length;
        Leases = leases;
        LeaseCount = leaseCount;
        CloseAfter = closeAfter;
    }

    public byte[] Buffer { get; }
    public int Length { get; }
    public ValueLease?[]? Leases { get; }
    public int LeaseCount { get; }

    /// <summary>The connection closes after sending this reply (frame-level errors).</summary>
    public bool CloseAfter { get; }

    public static Reply Create(byte[] pooledBuffer, int length, ValueLease?[]? pooledLeases = null, int leaseCount = 0, bool closeAfter = false)
        => new(pooledBuffer, length, pooledLeases, leaseCount, closeAfter);

    /// <summary>Releases every lease and returns the pooled arrays. Called exactly once, by the writer.</summary>
    public void Complete(TieredStore store)
    {
        if (Leases is not null)
        {
            for (int i = 0; i < LeaseCount; i++)
            {
                if (Leases[i] is { } lease) store.Release(lease);
                Leases[i] = null;
            }
            ArrayPool<ValueLease?>.Shared.Return(Leases);
        }
        ArrayPool<byte>.Shared.Return(Buffer);
    }
}
