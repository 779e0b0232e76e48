namespace Kvasir.Prefix.Internal;

/// <summary>
/// How often keys were read, keys no longer cached included: a count-min sketch of four rows of byte counters that
/// saturate at <see cref="MaxCount"/>, with conservative update and halving of every counter after
/// <see cref="AgingFactor"/> × width increments, over 64-bit keys. The node's sketch (same rows, seeds, widths and
/// aging), so that chainsketch makes the node's choices; the width follows the blocks tracked (<see cref="Fit"/>: at
/// least twice as many counters per row, 8 bytes a block; growing starts from empty counters). Not thread-safe.
/// </summary>
internal sealed class FrequencySketch
{
    public const int MaxCount = 15;
    public const int AgingFactor = 10;

    private const int Rows = 4;
    private const int MinWidth = 64;

    private static readonly ulong[] Seeds = [0x9E3779B97F4A7C15UL, 0xC2B2AE3D27D4EB4FUL, 0x165667B19E3779F9UL, 0x27D4EB2F165667C5UL];

    private byte[] _counters = new byte[Rows * MinWidth];
    private int _width = MinWidth;
    private int _shift = 64 - 6;
    private long _increments;

    public int Width => _width;

    public void Fit(int keys)
    {
        if ((long)keys * 2 <= _width) return;
        int width = (int)Math.Min(1L << 30, System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)keys * 2));
        if (width == _width) return;
        _width = width;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)width);
        _counters = new byte[Rows * width];
        _increments = 0;
    }

    public int Estimate(ulong key)
    {
        int least = MaxCount;
        for (int row = 0; row < Rows; row++) least = Math.Min(least, _counters[Index(key, row)]);
        return least;
    }

    public void Increment(ulong key)
    {
        int least = Estimate(key);
        if (least < MaxCount)
        {
            for (int row = 0; row < Rows; row++)
            {
                ref byte counter = ref _counters[Index(key, row)];
                if (counter == least) counter++;
            }
        }
        if (++_increments >= (long)AgingFactor * _width)
        {
            _increments = 0;
            for (int i = 0; i < _counters.Length; i++) _counters[i] >>= 1;
        }
    }

    private int Index(ulong key, int row) => (row * _width) + (int)((key * Seeds[row]) >> _shift);
}
