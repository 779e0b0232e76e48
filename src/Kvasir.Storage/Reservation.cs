using Kvasir.Storage.Internal;

namespace Kvasir.Storage;

/// <summary>
/// Arena space reserved by <see cref="KvArenaStore.TryReserve(ReadOnlySpan{byte}, long, out Reservation?)"/> for a value that readers cannot see yet.
/// The producer writes exactly <see cref="Length"/> bytes at <see cref="Address"/> (for example straight from a
/// socket), then calls <see cref="KvArenaStore.Commit"/> or <see cref="KvArenaStore.Abort"/>. Reserved space is
/// never evicted; a reservation that is neither committed nor aborted holds its space for the life of the store.
/// </summary>
/// <remarks>
/// Hazard: after Commit or Abort the memory belongs to the store (after Abort it may already hold another value),
/// so the producer must finish writing before calling either. <see cref="Span"/> refuses to hand out memory once
/// the reservation is settled, but a span or address obtained earlier is not revoked.
/// </remarks>
public sealed unsafe class Reservation
{
    // The key: the reservation's own byte[] copy, or the slot that holds the key in the index (an overwrite: a slot's
    // key bytes never change, even after the slot dies, so they need no copy; Key makes one only when a caller needs an array).
    private object _key;

    internal Reservation(KvArenaStore store, byte[] key, ValueVersion version, nint address)
        : this(store, (object)key, version, address)
    {
    }

    /// <summary>A reservation for an overwrite of the key held by <paramref name="keyOwner"/>.</summary>
    internal Reservation(KvArenaStore store, Slot keyOwner, ValueVersion version, nint address)
        : this(store, (object)keyOwner, version, address)
    {
    }

    private Reservation(KvArenaStore store, object key, ValueVersion version, nint address)
    {
        Store = store;
        _key = key;
        Version = version;
        Address = address;
    }

    /// <summary>Start of the reserved bytes in the arena. Valid to write until Commit, Abort or the store's Dispose.</summary>
    public nint Address { get; }

    /// <summary>Length of the value being stored, in bytes (the space reserved may be rounded up to an allocation unit).</summary>
    public long Length => Version.Length;

    /// <summary>The reserved bytes. Throws <see cref="InvalidOperationException"/> once committed or aborted.</summary>
    public Span<byte> Span
    {
        get
        {
            if (State != ReservationState.Pending)
            {
                throw new InvalidOperationException($"The reservation is already {State.ToString().ToLowerInvariant()}.");
            }

            return new Span<byte>((void*)Address, checked((int)Length));
        }
    }

    /// <summary>
    /// Zeroes the reserved bytes. A writer that may commit bytes it did not write (a shared-memory client
    /// that cannot open the arena file) must not publish what the space held before: a removed value.
    /// </summary>
    public void Clear()
    {
        if (State != ReservationState.Pending)
            throw new InvalidOperationException($"The reservation is already {State.ToString().ToLowerInvariant()}.");
        System.Runtime.InteropServices.NativeMemory.Clear((void*)Address, (nuint)Length);
    }

    /// <summary>
    /// How long the value lives once published: null (the default) for the store's <see cref="StoreOptions.DefaultTtl"/>,
    /// <see cref="TimeSpan.Zero"/> for never. Set before Commit.
    /// </summary>
    public TimeSpan? Ttl { get; set; }

    internal KvArenaStore Store { get; }

    /// <summary>The key as an array (lower tiers keep keys as arrays): an overwrite's reservation copies its key on the first call.</summary>
    internal byte[] Key => _key as byte[] ?? (byte[])(_key = ((Slot)_key).Key.ToArray());

    /// <summary>The key this reservation will be published under.</summary>
    public ReadOnlySpan<byte> KeySpan => _key is byte[] key ? key : ((Slot)_key).Key;

    internal ValueVersion Version { get; }

    internal ReservationState State { get; set; }
}

/// <summary>Life of a <see cref="Reservation"/>.</summary>
internal enum ReservationState : byte
{
    Pending,
    Committed,
    Aborted,
}
