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
    /// two-process bench know.</summary>
    public void FillPattern()
    {
        for (long at = 0; at < Length; at += 1 << 20)
        {
            var chunk = Span(at, (int)Math.Min(1 << 20, Length - at));
            for (int i = 0; i < chunk.Length; i++) chunk[i] = Pattern(at + i);
        }
    }

    /// <summary>Whether bytes [offset, offset + length) hold <see cref="FillPattern"/>'s bytes.</summary>
    public bool HoldsPattern(long offset, int length)
    {
        var span = Span(offset, length);
        for (int i = 0; i < span.Length; i++)
            if (span[i] != Pattern(offset + i)) return false;
        return true;
    }

    private static byte Pattern(long at) => (byte)(at * 131 % 251);

    public void Dispose() => _native?.Dispose();
}
