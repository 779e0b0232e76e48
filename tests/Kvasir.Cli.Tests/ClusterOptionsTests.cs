using Kvasir.Cli;

namespace Kvasir.Cli.Tests;

/// <summary>The cluster flags of serve and of the client verbs: parsed into options, or refused in one line.</summary>
public sealed class ClusterOptionsTests
{
    [Fact]
    public void Without_redis_a_node_is_standalone()
        => Assert.Null(ServeCommand.ParseOptions([]).Cluster);

    [Fact]
    public void Cluster_flags_map_to_the_join_options()
    {
        var o = ServeCommand.ParseOptions(["--redis", "redis://10.0.0.1:6380/2", "--cluster", "prod-1", "--advertise", "10.0.0.7:7380",
            "--node-id", "rack1-n7", "--heartbeat-ttl", "2.5", "--kind", "embedded"]);
        Assert.NotNull(o.Cluster);
        Assert.Equal("redis://10.0.0.1:6380/2", o.Cluster!.RedisUrl);
        Assert.Equal("prod-1", o.Cluster.Name);
        Assert.Equal("10.0.0.7:7380", o.Cluster.Advertise);
        Assert.Equal(TimeSpan.FromSeconds(2.5), o.Cluster.HeartbeatTtl);
        Assert.Equal("embedded", o.Cluster.Kind);
        Assert.Equal("rack1-n7", o.NodeId);
    }

    [Theory]
    [InlineData(new[] { "--cluster", "x" }, "--cluster needs --redis")]
    [InlineData(new[] { "--advertise", "1.2.3.4:5" }, "--advertise needs --redis")]
    [InlineData(new[] { "--redis", "http://h:1" }, "--redis")]
    [InlineData(new[] { "--redis-ca", "/ca.pem" }, "--redis-ca needs --redis")]
    [InlineData(new[] { "--redis", "rediss://h:1", "--redis-ca", "/nonexistent/ca.pem" }, "CA file '/nonexistent/ca.pem' cannot be read")]
    [InlineData(new[] { "--redis", "redis://h:1", "--redis-ca", "/nonexistent/ca.pem" }, "TLS only; use rediss://")]
    [InlineData(new[] { "--redis", "redis+sentinel://h:1" }, "name the master")]
    [InlineData(new[] { "--redis", "redis://h:1,h:2" }, "redis+sentinel://")]
    [InlineData(new[] { "--redis", "redis://h:1?tls=yes" }, "unknown parameter 'tls=yes'")]
    [InlineData(new[] { "--redis", "redis://h:1", "--cluster", "has space" }, "--cluster")]
    [InlineData(new[] { "--redis", "redis://h:1", "--host", "0.0.0.0" }, "--advertise HOST:PORT is needed")]
    [InlineData(new[] { "--redis", "redis://h:1", "--advertise", "nohost" }, "--advertise")]
    [InlineData(new[] { "--redis", "redis://h:1", "--heartbeat-ttl", "0.1" }, "--heartbeat-ttl")]
    [InlineData(new[] { "--redis", "redis://h:1", "--kind", "master" }, "--kind")]
    [InlineData(new[] { "--node-id", "has space" }, "--node-id")]
    public void Bad_cluster_flags_are_one_line_usage_errors(string[] args, string expected)
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(args));
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Client_verbs_take_redis_cluster_and_replicas_in_place_of_server()
    {
        var cl = CommandLine.Parse(["--redis", "redis://127.0.0.1:6379", "--cluster", "c", "--replicas", "3"], ClientCommands.ConnectOptions, []);
        var o = ClientCommands.StoreOptions(cl, "t", 1);
        Assert.Equal("redis://127.0.0.1:6379", o.RedisUrl);
        Assert.Equal("c", o.Cluster);
        Assert.Equal(3, o.Replicas);
    }

    [Theory]
    [InlineData(new[] { "--redis", "redis://h:1", "--server", "h:2" }, "not both")]
    [InlineData(new[] { "--cluster", "c" }, "--cluster needs --redis")]
    [InlineData(new[] { "--replicas", "0" }, "--replicas")]
    [InlineData(new[] { "--server", "a:1,b" }, "--server")]
    public void Bad_client_cluster_flags_are_usage_errors(string[] args, string expected)
    {
        var cl = CommandLine.Parse(args, ClientCommands.ConnectOptions, []);
        var ex = Assert.Throws<UsageException>(() => ClientCommands.StoreOptions(cl, "t", 1));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public async Task Status_of_an_unreachable_redis_is_a_one_line_error()
    {
        var r = await Cli.RunAsync("status", "--redis", "redis://127.0.0.1:1", "--timeout", "1");
        Assert.Equal(3, r.ExitCode);
        Assert.Contains("cannot read cluster", r.Stderr);
        Assert.Single(r.ErrLines);
    }
}

/// <summary>The tier flags of serve.</summary>
public sealed class TierOptionsTests
{
    [Fact]
    public void Without_tier_flags_a_node_is_dram_only()
        => Assert.Null(ServeCommand.ParseOptions([]).Tiers);

    [Fact]
    public void Tier_flags_map_to_the_tier_options()
    {
        var t = ServeCommand.ParseOptions(["--disk", "/tmp/d", "--disk-capacity", "2GiB", "--promote-after", "3", "--hot-fraction", "0.5", "--shared-fs", "/tmp/s"]).Tiers!;
        Assert.Equal("/tmp/d", t.DiskPath);
        Assert.Equal(2L << 30, t.DiskCapacity);
        Assert.Equal(3, t.PromoteAfter);
        Assert.Equal(0.5, t.HotFraction);
        Assert.Equal("/tmp/s", t.SharedFsPath);
    }

    [Theory]
    [InlineData(new[] { "--disk-capacity", "1GiB" }, "--disk-capacity needs --disk")]
    [InlineData(new[] { "--promote-after", "3" }, "--promote-after needs --disk or --shared-fs")]
    [InlineData(new[] { "--disk", "/tmp/d", "--hot-fraction", "2" }, "--hot-fraction")]
    [InlineData(new[] { "--disk", "/tmp/d", "--promote-after", "0" }, "--promote-after")]
    [InlineData(new[] { "--disk", "/tmp/d", "--disk-capacity", "1MiB" }, "--disk-capacity")]
    [InlineData(new[] { "--disk", "/tmp/d", "--disk-capacity", "lots" }, "--disk-capacity")]
    public void Bad_tier_flags_are_one_line_usage_errors(string[] args, string expected)
    {
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(args));
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void A_disk_path_that_is_a_file_is_a_usage_error()
    {
        var file = Path.GetTempFileName();
        try
        {
            var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(["--disk", file]));
            Assert.Contains("is a file", ex.Message);
        }
        finally { File.Delete(file); }
    }
}
