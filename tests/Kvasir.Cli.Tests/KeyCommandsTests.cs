namespace Kvasir.Cli.Tests;

/// <summary>One <c>kvasir serve</c> with a namespace quota (t/ = 100 bytes), shared by <see cref="KeyCommandsTests"/>.</summary>
public sealed class QuotaServeFixture : IAsyncLifetime
{
    public ServeProcess Serve { get; private set; } = null!;

    public async Task InitializeAsync() => Serve = await ServeProcess.StartAsync("--port", "0", "--memory", "64MB", "--namespace-quota", "t/=100");

    public async Task DisposeAsync()
    {
        if (Serve is not null) await Serve.DisposeAsync();
    }
}

/// <summary>kvasir ls / info / rm --prefix / put --ttl and a namespace quota, through the real binary against a real node.</summary>
public class KeyCommandsTests(QuotaServeFixture fixture) : IClassFixture<QuotaServeFixture>
{
    private string Server => fixture.Serve.Server;

    private static string Unique(string name) => $"{name}-{Guid.NewGuid():N}"[..20];

    private async Task PutAsync(string key, int bytes, params string[] extra)
    {
        var r = await Cli.RunWithInputAsync(new byte[bytes], ["put", "--server", Server, .. extra, key, "-"]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    [Fact]
    public async Task Ls_pages_through_a_prefix_info_describes_a_key_and_rm_prefix_removes_exactly_that_prefix()
    {
        string p = Unique("ls") + "/";
        foreach (var i in Enumerable.Range(0, 5)) await PutAsync($"{p}{i}", 10 + i);
        await PutAsync(p.TrimEnd('/') + "-other", 1);

        var ls = await Cli.RunAsync("ls", "--server", Server, p, "--page-size", "2");
        Assert.True(ls.ExitCode == 0, ls.ToString());
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"{p}{i}\t{10 + i}"), ls.OutLines);
        Assert.Equal(["5 keys; tiers listed: dram"], ls.ErrLines);

        var info = await Cli.RunAsync("info", "--server", Server, $"{p}3", $"{p}missing");
        Assert.Equal(1, info.ExitCode);
        Assert.StartsWith($"{p}3\ttier=dram bytes=13 ", info.OutLines[0], StringComparison.Ordinal);
        Assert.Contains("ttl=none pins=0", info.OutLines[0], StringComparison.Ordinal);
        Assert.Equal($"{p}missing\tNotFound", info.OutLines[1]);

        var rm = await Cli.RunAsync("rm", "--server", Server, "--prefix", p);
        Assert.Equal((0, "removed 5 keys"), (rm.ExitCode, rm.Out.Trim()));
        Assert.Empty((await Cli.RunAsync("ls", "--server", Server, p)).OutLines);
        Assert.Single((await Cli.RunAsync("ls", "--server", Server, p.TrimEnd('/'))).OutLines);
    }

    [Fact]
    public async Task A_value_put_with_ttl_becomes_a_miss_after_it()
    {
        string key = Unique("ttl");
        await PutAsync(key, 5, "--ttl", "1");
        Assert.Contains("ttl=1s", (await Cli.RunAsync("info", "--server", Server, key)).Out, StringComparison.Ordinal);
        await Poll.UntilAsync(async () => (await Cli.RunAsync("get", "--server", Server, key)).ExitCode == 1,
            "kvasir get of a value put with --ttl 1 to exit 1 (a miss)", TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_put_over_the_namespace_quota_fails_with_one_line_naming_the_namespace_and_budget()
    {
        string key = "t/" + Unique("q");
        await PutAsync(key + "a", 80);
        var r = await Cli.RunWithInputAsync(new byte[80], "put", "--server", Server, key + "b", "-");
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains("namespace 't/' is over its DRAM budget of 100 bytes", line, StringComparison.Ordinal);
        Assert.Equal(0, (await Cli.RunAsync("rm", "--server", Server, "--prefix", "t/")).ExitCode);
    }

    [Theory]
    [InlineData("the 512-byte key limit", "ls", "PREFIX600")]
    [InlineData("outside 1..8192", "ls", "--page-size", "9000")]
    [InlineData("in 1..4294967295", "put", "--ttl", "99999999999", "k", "-")]
    [InlineData("--prefix and --all go with rm", "get", "--prefix", "a", "k")]
    [InlineData("unknown option --all", "ls", "--all")]
    [InlineData("one of them", "rm", "--prefix", "a", "k")]
    [InlineData("needs a non-empty prefix", "rm", "--prefix", "")]
    public async Task Bad_input_exits_2_with_one_line_naming_the_limit(string expected, params string[] args)
    {
        args = [.. args.Select(a => a == "PREFIX600" ? new string('x', 600) : a)];
        var r = await Cli.RunWithInputAsync([], [args[0], "--server", Server, .. args[1..]]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, Assert.Single(r.ErrLines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not PREFIX=SIZE", "--namespace-quota", "tenant")]
    [InlineData("given twice", "--namespace-quota", "a/=1MiB", "--namespace-quota", "a/=2MiB")]
    [InlineData("whole number of seconds", "--default-ttl", "0")]
    public async Task Serve_refuses_bad_key_options_with_exit_2(string expected, params string[] args)
    {
        var r = await Cli.RunAsync(["serve", "--port", "0", "--memory", "16MB", .. args]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
    }
}
