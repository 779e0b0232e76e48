namespace Kvasir.Storage;

/// <summary>A key prefix with a byte budget (a model's or tenant's namespace): PUTs that would take the DRAM bytes of its keys above the budget are refused.</summary>
/// <param name="Prefix">Non-empty key prefix; a key belongs to the longest configured prefix it starts with.</param>
/// <param name="BudgetBytes">Most bytes of values (their lengths, counted while reserved or published in DRAM) under the prefix; positive.</param>
public sealed record NamespaceQuota(byte[] Prefix, long BudgetBytes);

/// <summary>A namespace's budget and what its keys use now.</summary>
public readonly record struct NamespaceUsage(byte[] Prefix, long BudgetBytes, long UsedBytes);

/// <summary>One key listed by a scan, with its value's length.</summary>
public readonly record struct KeyEntry(byte[] Key, long Length);

/// <summary>One page of a scan: keys in byte order, and whether more may follow after the last one.</summary>
public sealed record KeyPage(IReadOnlyList<KeyEntry> Keys, bool More);

/// <summary>What the store knows about one key.</summary>
/// <param name="Tier">Where the value is: DRAM, else the tier below that holds it.</param>
/// <param name="Length">Value length in bytes.</param>
/// <param name="AgeMs">Milliseconds since the value was written (DRAM only; 0 below).</param>
/// <param name="TtlMs">Milliseconds until it expires; 0 when it does not.</param>
/// <param name="Pins">Pins held (DRAM only).</param>
/// <param name="Leases">Readers holding the value now (DRAM only).</param>
/// <param name="Namespace">The namespace the key falls in, with its budget and use; null when none.</param>
public sealed record KeyInfo(StoreTier Tier, long Length, long AgeMs, long TtlMs, int Pins, int Leases, NamespaceUsage? Namespace);

/// <summary>Lexicographic (unsigned byte) order of keys: the order scans list keys in.</summary>
internal sealed class ByteOrderComparer : IComparer<byte[]>
{
    public static readonly ByteOrderComparer Instance = new();

    private ByteOrderComparer()
    {
    }

    public int Compare(byte[]? x, byte[]? y) => x is null ? (y is null ? 0 : -1) : y is null ? 1 : x.AsSpan().SequenceCompareTo(y);
}
