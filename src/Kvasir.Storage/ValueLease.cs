using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <summary>
/// A published value held for reading, from <see cref="KvArenaStore.TryLease(ReadOnlySpan{byte}, ILeaseHolder?, out ValueLease?)"/>. While the lease is held its bytes
/// are never freed or reused, even if the key is overwritten, removed or the store is under eviction pressure.
/// Release it with <see cref="KvArenaStore.Release"/> as soon as the bytes have been copied out.
/// </summary>
/// <remarks>
/// Hazard: a holder-less lease that outlives <see cref="StoreOptions.LeaseTimeout"/> is released by the reaper, after
/// which its memory may be reused at any time. Readers that may be slow should pass an <see cref="ILeaseHolder"/>.
/// <see cref="Span"/> refuses to hand out memory once the lease is released, but a span obtained earlier is not revoked.
/// </remarks>
public sealed unsafe class ValueLease : IListNode<ValueLease>
{
    internal ValueLease(KvArenaStore store, long id, ValueVersion version, nint address, ILeaseHolder? holder, long deadline)
    {
        Store = store;
        Id = id;
        Version = version;
        Address = address;
        Holder = holder;
        Deadline = deadline;
    }

    /// <summary>Start of the value's bytes in the arena.</summary>
    public nint Address { get; }

    /// <summary>Value length in bytes.</summary>
    public long Length => Version.Length;

    /// <summary>
    /// The value's version: the PUT's <c>VERSION</c> when the writer chose one, else the node's clock at the write
    /// (a hybrid logical clock, see docs/cluster.md § Versions); 0 for a value read from the shared tier, which keeps none.
    /// </summary>
    public long Sequence => Version.Sequence;

    /// <summary>CRC-32C the producer supplied at commit (see <see cref="Protocol.Crc32C"/>).</summary>
    public uint Crc32C => Version.Crc32C;

    /// <summary>The value's bytes. Throws <see cref="InvalidOperationException"/> once released.</summary>
    public ReadOnlySpan<byte> Span
    {
        get
        {
            if (Released)
            {
                throw new InvalidOperationException("The lease has been released.");
            }

            return new ReadOnlySpan<byte>((void*)Address, checked((int)Length));
        }
    }

    /// <summary>Store-unique, increasing identifier (useful to correlate leases in logs and on the wire).</summary>
    public long Id { get; }

    internal KvArenaStore Store { get; }

    internal ValueVersion Version { get; }

    internal ILeaseHolder? Holder { get; }

    /// <summary>Stopwatch timestamp after which the lease is expired.</summary>
    internal long Deadline { get; }

    internal bool Released { get; set; }

    /// <summary>True once released, by its holder or by the store's reaper when it expired.</summary>
    public bool IsReleased => Released;

    // Links of the store's deadline queue (see LeaseQueue), kept off the public surface.
    private ValueLease? _queuePrev;
    private ValueLease? _queueNext;
    private bool _inQueue;

    ValueLease? IListNode<ValueLease>.ListPrev { get => _queuePrev; set => _queuePrev = value; }

    ValueLease? IListNode<ValueLease>.ListNext { get => _queueNext; set => _queueNext = value; }

    bool IListNode<ValueLease>.InList { get => _inQueue; set => _inQueue = value; }
}
