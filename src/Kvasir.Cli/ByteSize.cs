using System.Globalization;

namespace Kvasir.Cli;

/// <summary>
/// Sizes on the command line: a plain byte count, or a number with a unit. KB, MB, GB, TB are
/// powers of 1000; KiB, MiB, GiB, TiB and the bare K, M, G, T are powers of 1024. Case-insensitive.
/// </summary>
public static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("kib", 1L << 10), ("mib", 1L << 20), ("gib", 1L << 30), ("tib", 1L << 40),
        ("kb", 1000L), ("mb", 1000L * 1000), ("gb", 1000L * 1000 * 1000), ("tb", 1000L * 1000 * 1000 * 1000),
        ("k", 1L << 10), ("m", 1L << 20), ("g", 1L << 30), ("t", 1L << 40), ("b", 1),
    ];

    /// <summary>Parses a size; throws <see cref="FormatException"/> with the reason.</summary>
    public static long Parse(string text)
    {
        var s = text.Trim().ToLowerInvariant();
        long factor = 1;
        foreach (var (suffix, f) in Units)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal) && s.Length > suffix.Length)
            {
                factor = f;
                s = s[..^suffix.Length].Trim();
                break;
            }
        }
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number) || number < 0)
            throw new FormatException($"'{text}' is not a size (use a byte count, or e.g. 64MB, 4GiB, 512KiB)");
        decimal bytes;
        try { bytes = number * factor; }
        catch (OverflowException) { throw new FormatException($"'{text}' is not a whole number of bytes that fits in 64 bits"); }
        if (bytes > long.MaxValue || bytes != decimal.Truncate(bytes))
            throw new FormatException($"'{text}' is not a whole number of bytes that fits in 64 bits");
        return (long)bytes;
    }

    /// <summary>Human form with binary units, e.g. "1 GiB", "256 KiB", "1000 B".</summary>
    public static string Format(long bytes)
    {
        string[] names = ["B", "KiB", "MiB", "GiB", "TiB"];
        int i = 0;
        decimal v = bytes;
        while (i < names.Length - 1 && v >= 1024 && v % 1024 == 0) { v /= 1024; i++; }
        return $"{v.ToString(CultureInfo.InvariantCulture)} {names[i]}";
    }

    /// <summary>Rounded form for measured amounts (free space, file sizes): "20.4 GiB", "512 B".</summary>
    public static string Approx(long bytes)
    {
        string[] names = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        int i = 0;
        double v = bytes;
        while (i < names.Length - 1 && v >= 1024) { v /= 1024; i++; }
        return i == 0 ? $"{bytes} B" : $"{v.ToString(v >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture)} {names[i]}";
    }
}
