namespace Kvasir.Shared;

/// <summary>
/// How often keys were read, including keys no longer stored (or cached): a count-min sketch (four rows of byte counters that
/// saturate at <see cref="MaxCount"/>, conservative update) over 64-bit key hashes, in the manner of TinyLFU. A
/// collision can only overstate a count, never lose data. Every <see cref="AgingFactor"/> × width increments all
/// counters are halved, so what was read an hour ago counts less than what was read a minute ago. The width follows
/// the number of keys the owner tracks (<see cref="Fit"/>): at least twice as many counters per row as keys, so 8
/// bytes per key; a resize starts from empty counters (it happens only while the store fills). Not thread-safe.
/// One source compiled into both Kvasir.Storage (the node's chainsketch) and Kvasir.Prefix (the engine side's), which
/// may not depend on each other (DESIGN.md): the same rows, seeds, widths and aging make the engine side choose as the
/// node does.
/// </summary>
internal sealed class FrequencySketch
{
    /// <summary>A counter stops here.</summary>
    public const int MaxCount = 15;

    /// <summary>Counters are halved after this many increments per column of a row.</summary>
    public const int AgingFactor = 10;

    private const int Rows = 4;
    private const int MinWidth = 64;

    private static readonly ulong[] Seeds = [0x9E3779B97F4A7C15UL, 0xC2B2AE3D27D4EB4FUL, 0x165667B19E3779F9UL, 0x27D4EB2F165667C5UL];

    private byte[] _counters = new byte[Rows * MinWidth];
    private int _width = MinWidth;
    private int _shift = 64 - 6;
    private long _increments;

    /// <summary>Counters per row.</summary>
    public int Width => _width;

    /// <summary>Grows the rows to at least twice <paramref name="keys"/> counters (powers of two), forgetting all counts when it grows.</summary>
    public void Fit(int keys)
    {
        if ((long)keys * 2 <= _width)
        {
            return;
        }

        int width = (int)Math.Min(1L << 30, System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)keys * 2));
        if (width == _width)
        {
            return;
        }

        _width = width;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)width);
        _counters = new byte[Rows * width];
        _increments = 0;
    }

    /// <summary>The key's estimated count: the least of its four counters.</summary>
    public int Estimate(ulong hash)
    {
        int least = MaxCount;
        for (int row = 0; row < Rows; row++)
        {
            least = Math.Min(least, _counters[Index(hash, row)]);
        }

        return least;
    }

    /// <summary>Counts one read of the key: its least counters go up by one (conservative update), then maybe everything ages.</summary>
    public void Increment(ulong hash)
    {
        int least = Estimate(hash);
        if (least < MaxCount)
        {
            for (int row = 0; row < Rows; row++)
            {
                ref byte counter = ref _counters[Index(hash, row)];
                if (counter == least)
                {
                    counter++;
                }
            }
        }

        if (++_increments >= (long)AgingFactor * _width)
        {
            _increments = 0;
            for (int i = 0; i < _counters.Length; i++)
            {
                _counters[i] >>= 1;
            }
        }
    }

    private int Index(ulong hash, int row) => (row * _width) + (int)((hash * Seeds[row]) >> _shift);
}
