using Kvasir.Transfer;

namespace Kvasir.Cli;

/// <summary>
/// Memory for <c>kvasir transfer-bench</c>'s regions and its TCP baseline's buffers, of one kind for both
/// (<c>--region-memory</c>): <c>huge</c> a <see cref="NativeRegion"/> advised for transparent huge pages, <c>pages</c>
/// a <see cref="NativeRegion"/> of 4 KiB pages, <c>managed</c> a byte array.
/// </summary>
public sealed class BenchMemory : IDisposable
{
    private readonly byte[]? _array;
    private readonly NativeRegion? _native;

    private BenchMemory(byte[]? array, NativeRegion? native)
    {
        _array = array;
        _native = native;
    }

    public static BenchMemory Allocate(string kind, long length) => kind switch
    {
        "managed" => new BenchMemory(new byte[length], null),
        _ => new BenchMemory(null, NativeRegion.Allocate(length, hugePages: kind == "huge")),
    };

    public long Length => _array?.LongLength ?? _native!.Length;

    public Span<byte> Span(long offset, int length) => _array is { } a ? a.AsSpan(checked((int)offset), length) : _native!.AsSpan(offset, length);

    public int Register(TransferEngine engine) => _array is { } a ? engine.Register(a) : engine.Register(_native!);

    public void CopyTo(BenchMemory other)
    {
        for (long at = 0; at < Length; at += int.MaxValue)
        {
            int n = (int)Math.Min(int.MaxValue, Length - at);
            Span(at, n).CopyTo(other.Span(at, n));
        }
    }

    /// <summary>Writes every byte with <paramref name="value"/> (so no page fault happens while measured).</summary>
    public void Fill(byte value)
    {
        for (long at = 0; at < Length; at += int.MaxValue) Span(at, (int)Math.Min(int.MaxValue, Length - at)).Fill(value);
    }

    /// <summary>Writes the bench's byte pattern (byte i of the region: i * 131 mod 251), which both sides of a
    /// two-process bench know: what a <c>--listen</c> target's region holds when it starts.</summary>
    public void FillPattern() => FillPattern(0, Length, 0);

    /// <summary>
    /// Writes bytes [offset, offset + length) with the pattern of <paramref name="seed"/> (byte i: (i * 131 + seed) mod
    /// 251; <paramref name="seed"/> 0..250). Two seeds give different bytes at every position.
    /// </summary>
    public void FillPattern(long offset, long length, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(seed);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(seed, 250);
        // The pattern repeats every 251 bytes: a tile of 256 periods is computed once and copied.
        const int Tile = 251 * 256;
        Span<byte> tile = new byte[Tile];
        for (int i = 0; i < Tile; i++) tile[i] = Pattern(offset + i, seed);
        for (long at = 0; at < length; at += Tile)
        {
            int n = (int)Math.Min(Tile, length - at);
            tile[..n].CopyTo(Span(offset + at, n));
        }
    }

    private static byte Pattern(long at, int seed) => (byte)((at % 251 * 131 + seed) % 251);

    public void Dispose() => _native?.Dispose();
}
