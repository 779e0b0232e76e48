namespace Kvasir.Storage.Internal;

/// <summary>
/// Compares slots by their keys' bytes (hashing as <see cref="ByteKeyComparer"/>, seeded per process), so the index can
/// be a set of slots (16 B an entry) instead of a key → slot map (24 B), and probed with a span without allocating.
/// </summary>
internal sealed class SlotKeyComparer : IEqualityComparer<Slot>, IAlternateEqualityComparer<ReadOnlySpan<byte>, Slot>
{
    public static readonly SlotKeyComparer Instance = new();

    private SlotKeyComparer()
    {
    }

    public bool Equals(Slot? x, Slot? y) =>
        ReferenceEquals(x, y) || (x is not null && y is not null && x.Key.SequenceEqual(y.Key));

    public int GetHashCode(Slot obj) => ByteKeyComparer.Instance.GetHashCode(obj.Key);

    public bool Equals(ReadOnlySpan<byte> alternate, Slot other) => alternate.SequenceEqual(other.Key);

    public int GetHashCode(ReadOnlySpan<byte> alternate) => ByteKeyComparer.Instance.GetHashCode(alternate);

    /// <summary>Not supported: a slot is added whole (with its version), never made from a bare key.</summary>
    public Slot Create(ReadOnlySpan<byte> alternate) => throw new NotSupportedException("The index adds whole slots, never bare keys.");
}
