using Kvasir.Cli;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Cli.Tests;

public class ServeOptionsTests
{
    private const string Key64 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    [Fact]
    public void With_no_flags_the_node_listens_on_loopback_7380_with_1GiB_64MiB_values_LRU_and_no_auth()
    {
        var o = ServeCommand.ParseOptions([]);
        Assert.Equal("127.0.0.1", o.Host);
        Assert.Equal(7380, o.Port);
        Assert.Null(o.AuthKey);
        Assert.Equal(1L << 30, o.Store.Capacity);
        Assert.Equal(64L << 20, o.Store.MaxValueBytes);
        Assert.Null(o.Store.BlockSize);
        Assert.Equal(EvictionPolicyKind.ChainLfu, o.Store.Eviction);
        Assert.Equal(0.95, o.Store.HighWatermark);
        Assert.Equal(0.90, o.Store.LowWatermark);
        Assert.Equal(TimeSpan.FromSeconds(30), o.Store.LeaseTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), o.FrameTimeout);
        Assert.Equal(4096, o.MaxConnections);
        Assert.Equal(new NodeOptions().MaxBatchKeys, o.MaxBatchKeys);
    }

    [Fact]
    public void Every_flag_maps_to_its_node_or_store_option()
    {
        var o = ServeCommand.ParseOptions([
            "--host", "0.0.0.0", "--port", "9000", "--memory", "256MiB", "--max-value", "8MiB", "--block-size", "1MiB",
            "--eviction", "prefix", "--high-watermark", "0.8", "--low-watermark", "0.5", "--auth-key", Key64,
            "--lease-timeout", "7", "--frame-timeout", "9", "--max-batch", "100", "--max-connections", "12", "--log-level", "warning",
        ]);
        Assert.Equal("0.0.0.0", o.Host);
        Assert.Equal(9000, o.Port);
        Assert.Equal(256L << 20, o.Store.Capacity);
        Assert.Equal(8L << 20, o.Store.MaxValueBytes);
        Assert.Equal(1 << 20, o.Store.BlockSize);
        Assert.Equal(EvictionPolicyKind.PrefixAware, o.Store.Eviction);
        Assert.Equal(0.8, o.Store.HighWatermark);
        Assert.Equal(0.5, o.Store.LowWatermark);
        Assert.Equal(Convert.FromHexString(Key64), o.AuthKey);
        Assert.Equal(TimeSpan.FromSeconds(7), o.Store.LeaseTimeout);
        Assert.Equal(TimeSpan.FromSeconds(9), o.FrameTimeout);
        Assert.Equal(100, o.MaxBatchKeys);
        Assert.Equal(12, o.MaxConnections);
    }

    [Fact]
    public void Block_size_off_means_variable_size_allocation()
        => Assert.Null(ServeCommand.ParseOptions(["--block-size", "off"]).Store.BlockSize);

    [Fact]
    public void Memory_below_64MiB_caps_the_default_max_value_at_the_capacity()
    {
        var o = ServeCommand.ParseOptions(["--memory", "64MB"]);
        Assert.Equal(64_000_000L, o.Store.Capacity);
        Assert.Equal(64_000_000L, o.Store.MaxValueBytes);
    }

    [Fact]
    public void Memory_above_64MiB_keeps_the_64MiB_default_max_value()
        => Assert.Equal(64L << 20, ServeCommand.ParseOptions(["--memory", "4GiB"]).Store.MaxValueBytes);

    [Fact]
    public void Port_zero_is_accepted_to_pick_a_free_port()
        => Assert.Equal(0, ServeCommand.ParseOptions(["--port", "0"]).Port);

    [Fact]
    public void The_equals_form_works_for_serve_flags()
        => Assert.Equal(1234, ServeCommand.ParseOptions(["--port=1234"]).Port);

    [Theory]
    [InlineData("lru", EvictionPolicyKind.Lru)]
    [InlineData("fifo", EvictionPolicyKind.Fifo)]
    [InlineData("lfu", EvictionPolicyKind.Lfu)]
    [InlineData("s3fifo", EvictionPolicyKind.S3Fifo)]
    [InlineData("prefix", EvictionPolicyKind.PrefixAware)]
    [InlineData("chainlfu", EvictionPolicyKind.ChainLfu)]
    [InlineData("chainsketch", EvictionPolicyKind.ChainSketch)]
    public void Every_eviction_policy_is_selectable_by_name(string name, EvictionPolicyKind kind)
        => Assert.Equal(kind, ServeCommand.ParseOptions(["--eviction", name]).Store.Eviction);

    [Theory]
    [InlineData("--auth-key", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef")]   // 63 chars
    [InlineData("--auth-key", "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")]  // non-hex
    [InlineData("--memory", "lots")]
    [InlineData("--memory", "12xb")]
    [InlineData("--max-value", "-5")]
    [InlineData("--eviction", "mru")]
    [InlineData("--host", "localhost.invalid")]
    [InlineData("--host", "300.1.1.1")]
    [InlineData("--port", "70000")]
    [InlineData("--port", "-1")]
    [InlineData("--port", "http")]
    [InlineData("--high-watermark", "most")]
    [InlineData("--max-batch", "0")]
    [InlineData("--lease-timeout", "0")]
    public void A_bad_value_is_a_one_line_usage_error_mentioning_the_option(string option, string value)
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions([option, value]));
        Assert.Contains(option, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void A_63_character_auth_key_error_says_how_long_it_must_be()
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["--auth-key", Key64[..63]]));
        Assert.Contains("64", ex.Message);
    }

    [Fact]
    public void A_block_size_too_large_for_32_bits_is_a_usage_error_not_a_crash()
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["--memory", "8GiB", "--block-size", "4GiB"]));
        Assert.Contains("--block-size", ex.Message);
    }

    [Theory]
    [InlineData("--max-value", "2GiB")]          // larger than the 1 GiB default capacity
    [InlineData("--high-watermark", "1.5")]
    [InlineData("--low-watermark", "0.99")]      // above the high watermark
    [InlineData("--memory", "0")]
    public void Inconsistent_store_settings_are_one_line_usage_errors(string option, string value)
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions([option, value]));
        Assert.DoesNotContain('\n', ex.Message);
        Assert.DoesNotContain("(Parameter", ex.Message);
    }

    [Fact]
    public void A_positional_argument_is_a_usage_error()
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["7380"]));
        Assert.Contains("'7380'", ex.Message);
    }

    [Fact]
    public void An_unknown_serve_flag_is_a_usage_error_naming_it()
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["--capacity", "1GiB"]));
        Assert.Contains("--capacity", ex.Message);
    }
}

public sealed class FlagNamingTests
{
    [Theory]
    [InlineData("--max-value", "100MB", "--max-value")]   // larger than --memory 64MB
    [InlineData("--high-watermark", "1.5", "--high-watermark")]
    public void Store_setting_errors_name_the_flag_not_the_property(string option, string value, string expected)
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["--memory", "64MB", option, value]));
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain("MaxValueBytes", ex.Message);
        Assert.DoesNotContain("HighWatermark", ex.Message);
    }

    [Theory]
    [InlineData("127.0.0.1", null)]
    [InlineData("127.0.0.1:0", null)]
    [InlineData("127.0.0.1:99999", null)]
    [InlineData("127.0.0.1:7380", "abc")]
    public void A_bad_server_or_auth_key_on_a_client_verb_is_a_usage_error(string server, string? key)
    {
        Assert.Throws<UsageException>(() => ClientCommands.CheckServerAndKey(server, key));
    }

    [Fact]
    public async Task A_numeric_log_level_is_refused()
    {
        var ex = await Assert.ThrowsAsync<UsageException>(() => ServeCommand.RunAsync(["--port", "0", "--log-level", "42"]));
        Assert.Contains("--log-level", ex.Message);
    }
}
