namespace Kvasir.Prefix.Internal;

/// <summary>
/// The hashes of the last N evicted blocks, oldest forgotten first: an insert of one of them is a re-prefill (work
/// done twice). Kept as 64-bit fingerprints (<see cref="BlockHash.Fingerprint"/>, its 32 bytes folded; SHA-256 output
/// is uniform, so two hashes share one with odds of 2^-64, and then a re-prefill is miscounted, never a block lost) in a ring in eviction
/// order and an open-addressed set (linear probing, at most half full, no per-entry objects, deletion by shifting
/// the probe run back): 24 to 40 bytes per remembered hash, and a check or an add touches one bucket where a
/// <see cref="HashSet{T}"/> touches its bucket array and then its entry array. Not thread-safe (its table's owner
/// serialises calls).
/// </summary>
internal sealed class RecentEvictions
{
    private const ulong Fibonacci = 0x9E3779B97F4A7C15UL;

    private readonly int _capacity;
    private readonly ulong[] _ring;    // fingerprints in eviction order, oldest at _oldest
    private readonly ulong[] _set;     // 0 marks an empty bucket
    private readonly int _shift;
    private int _oldest, _count, _members;

    public RecentEvictions(int capacity)
    {
        _capacity = capacity;
        _ring = new ulong[capacity];
        int bits = Math.Max(4, 64 - System.Numerics.BitOperations.LeadingZeroCount(Math.Max(1UL, (ulong)capacity * 2) - 1));
        _set = capacity == 0 ? [] : new ulong[1 << bits];
        _shift = 64 - bits;
    }

    /// <summary>Hashes remembered now.</summary>
    public int Count => _members;

    public void Remember(in BlockHash hash)
    {
        if (_capacity == 0) return;
        ulong print = Fingerprint(hash);
        int b = Probe(print);
        if (_set[b] == print) return;
        _set[b] = print;
        _members++;
        if (_count == _capacity)
        {
            ulong old = _ring[_oldest];
            _ring[_oldest] = print;
            _oldest = (_oldest + 1) % _capacity;
            Delete(old);
        }
        else
        {
            _ring[(_oldest + _count++) % _capacity] = print;
        }
    }

    /// <summary>True when <paramref name="hash"/> was remembered (and forgets it: one re-prefill per eviction).</summary>
    public bool Forget(in BlockHash hash) => _members > 0 && Delete(Fingerprint(hash));

    // 0 marks an empty bucket, so a hash that folds to 0 shares 1's fingerprint.
    private static ulong Fingerprint(in BlockHash hash) => hash.Fingerprint == 0 ? 1 : hash.Fingerprint;

    private int Home(ulong print) => (int)((print * Fibonacci) >> _shift);

    /// <summary>The bucket holding <paramref name="print"/>, or the empty bucket where its probe ends.</summary>
    private int Probe(ulong print)
    {
        int mask = _set.Length - 1;
        int b = Home(print);
        while (_set[b] != 0 && _set[b] != print) b = (b + 1) & mask;
        return b;
    }

    /// <summary>Takes <paramref name="print"/> out of the set (false when absent) and shifts its probe run back.</summary>
    private bool Delete(ulong print)
    {
        int hole = Probe(print);
        if (_set[hole] == 0) return false;
        int mask = _set.Length - 1;
        for (int next = (hole + 1) & mask; _set[next] != 0; next = (next + 1) & mask)
        {
            if (LinearProbing.MustStay(hole, next, Home(_set[next]))) continue;
            _set[hole] = _set[next];
            hole = next;
        }
        _set[hole] = 0;
        _members--;
        return true;
    }
}
