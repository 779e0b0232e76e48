using Kvasir.Cli;

namespace Kvasir.Cli.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData("64MB", 64_000_000L)]
    [InlineData("4GiB", 4L << 30)]
    [InlineData("1048576", 1_048_576L)]
    [InlineData("512KiB", 512L * 1024)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("2g", 2L << 30)]
    [InlineData("2G", 2L << 30)]
    [InlineData("64mb", 64_000_000L)]
    [InlineData("64mB", 64_000_000L)]
    [InlineData("4gib", 4L << 30)]
    [InlineData("4GIB", 4L << 30)]
    [InlineData("1k", 1024L)]
    [InlineData("1KB", 1000L)]
    [InlineData("1TB", 1_000_000_000_000L)]
    [InlineData("1TiB", 1L << 40)]
    [InlineData("100b", 100L)]
    [InlineData(" 3 MiB ", 3L << 20)]
    [InlineData("0", 0L)]
    public void Parse_accepts_byte_counts_and_decimal_or_binary_units(string text, long expected)
        => Assert.Equal(expected, ByteSize.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData("12xb")]
    [InlineData("MB")]
    [InlineData("1e6")]
    [InlineData("1,000")]
    public void Parse_rejects_text_that_is_not_a_size_with_a_message_quoting_it(string text)
    {
        var ex = Assert.Throws<FormatException>(() => ByteSize.Parse(text));
        Assert.Contains($"'{text}'", ex.Message);
        Assert.Contains("not a size", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("0.0001KB")]
    public void Parse_rejects_sizes_that_are_not_whole_bytes(string text)
    {
        var ex = Assert.Throws<FormatException>(() => ByteSize.Parse(text));
        Assert.Contains("whole number of bytes", ex.Message);
    }

    [Theory]
    [InlineData("99999999TiB")]
    [InlineData("9223372036854775808")]
    [InlineData("10000000000000000000000000000TiB")]
    [InlineData("79228162514264337593543950335TB")]
    public void Parse_rejects_sizes_that_overflow_64_bits_with_a_format_error(string text)
    {
        var ex = Assert.Throws<FormatException>(() => ByteSize.Parse(text));
        Assert.Contains($"'{text}'", ex.Message);
    }

    [Fact]
    public void Parse_accepts_the_largest_64_bit_byte_count()
        => Assert.Equal(long.MaxValue, ByteSize.Parse(long.MaxValue.ToString()));

    [Theory]
    [InlineData(0L, "0 B")]
    [InlineData(1000L, "1000 B")]
    [InlineData(1024L, "1 KiB")]
    [InlineData(1536L, "1536 B")]
    [InlineData(64L << 20, "64 MiB")]
    [InlineData(1L << 30, "1 GiB")]
    [InlineData(64_000_000L, "62500 KiB")]
    [InlineData(3L << 40, "3 TiB")]
    [InlineData(2048L << 40, "2048 TiB")]
    public void Format_uses_the_largest_exact_binary_unit(long bytes, string expected)
        => Assert.Equal(expected, ByteSize.Format(bytes));

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(1000L)]
    [InlineData(1023L)]
    [InlineData(1024L)]
    [InlineData(64_000_000L)]
    [InlineData(1L << 30)]
    [InlineData((1L << 30) + 4096)]
    [InlineData(5L << 40)]
    [InlineData(long.MaxValue)]
    public void Format_round_trips_through_Parse(long bytes)
        => Assert.Equal(bytes, ByteSize.Parse(ByteSize.Format(bytes)));
}
