using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Kvasir.Cli.Tests;

/// <summary>One <c>kvasir serve --max-value 1MiB</c> process shared by <see cref="OperatorMessageTests"/>.</summary>
public sealed partial class SmallValueServeFixture : IAsyncLifetime
{
    public ServeProcess Serve { get; private set; } = null!;
    public string TempDir { get; } = Directory.CreateTempSubdirectory("kvasir-cli-messages-").FullName;

    /// <summary>The admin address the serve line printed ("host:port").</summary>
    public string Admin { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB", "--max-value", "1MiB", "--admin-port", "0");
        var m = AdminOn().Match(Serve.Stdout);
        Assert.True(m.Success, $"serve printed no admin address: {Serve.Stdout}");
        Admin = m.Groups[1].Value;
    }

    public async Task DisposeAsync()
    {
        if (Serve is not null) await Serve.DisposeAsync();
        try { Directory.Delete(TempDir, recursive: true); } catch (IOException) { }
    }

    [GeneratedRegex(@"admin on http://([^/\s]+)/")]
    private static partial Regex AdminOn();
}

/// <summary>
/// Issue 19 point 8: each message an operator meets off the happy path is one line that names the limit or the fix.
/// Every test runs the real CLI against a real node (or none, where the point is that none is there).
/// </summary>
public sealed class OperatorMessageTests(SmallValueServeFixture fixture) : IClassFixture<SmallValueServeFixture>
{
    private string Server => fixture.Serve.Server;

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    [Fact]
    public async Task A_value_over_the_nodes_limit_names_its_size_the_limit_and_max_value_from_a_file_and_from_stdin()
    {
        var file = Path.Combine(fixture.TempDir, "big.bin");
        await File.WriteAllBytesAsync(file, new byte[2 << 20]);
        var r = await Cli.RunAsync("put", "--server", Server, "big", file);
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains("big.bin is 2.0 MiB", line);
        Assert.Contains("limit of 1 MiB", line);
        Assert.Contains("--max-value", line);
        var stdin = await Cli.RunWithInputAsync(new byte[(1 << 20) + 1], "put", "--server", Server, "big", "-");
        Assert.Equal(3, stdin.ExitCode);
        Assert.Contains("stdin is 1.0 MiB, over the node's value limit of 1 MiB", Assert.Single(stdin.ErrLines));
        // At the limit it is stored.
        Assert.Equal(0, (await Cli.RunWithInputAsync(new byte[1 << 20], "put", "--server", Server, "exact", "-")).ExitCode);
    }

    [Theory]
    [InlineData("put")]
    [InlineData("get")]
    [InlineData("exists")]
    public async Task A_key_over_512_bytes_names_the_limit_and_does_not_echo_the_key(string verb)
    {
        var key = new string('k', 600);
        var file = Path.Combine(fixture.TempDir, "small.bin");
        await File.WriteAllBytesAsync(file, [1, 2, 3]);
        string[] args = verb == "put" ? ["put", "--server", Server, key, file] : [verb, "--server", Server, key];
        var r = await Cli.RunAsync(args);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains("is 600 bytes: keys are 1 to 512 bytes", line);
        Assert.True(line.Length < 160, $"the key was echoed: {line.Length} characters");
        Assert.Equal(0, (await Cli.RunAsync("exists", "--server", Server, new string('k', 512))).ExitCode);   // 512 is allowed
    }

    [Fact]
    public async Task The_admin_port_given_as_the_data_port_says_it_is_the_admin_port()
    {
        var r = await Cli.RunAsync("get", "--server", fixture.Admin, "k");
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"{fixture.Admin} answered in HTTP", line);
        Assert.Contains("admin port, not its data port", line);
        Assert.DoesNotContain("Unavailable", line);
    }

    [Fact]
    public async Task A_refused_connection_asks_whether_a_node_runs_at_that_address()
    {
        int port = FreePort();
        var r = await Cli.RunAsync("get", "--server", $"127.0.0.1:{port}", "k");
        Assert.Equal(3, r.ExitCode);
        Assert.Contains($"connection refused: is a node running at 127.0.0.1:{port}?", Assert.Single(r.ErrLines));
    }

    [Fact]
    public async Task An_unreachable_redis_is_one_line_with_the_cause_and_the_fix()
    {
        int port = FreePort();
        var file = Path.Combine(fixture.TempDir, "value.bin");
        await File.WriteAllBytesAsync(file, [1]);
        var r = await Cli.RunAsync("put", "--redis", $"redis://127.0.0.1:{port}", "--timeout", "5", "k", file);
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"redis://127.0.0.1:{port}", line);
        Assert.Contains("is redis-server running there?", line);
        Assert.DoesNotContain("EVAL", line);
        Assert.True(line.Length < 300, line);
    }

    /// <summary>Every verb that takes --server reads it with one parser (HostPort), so every one says the same thing.</summary>
    [Theory]
    [InlineData("127.0.0.1", "get", "--server", "127.0.0.1", "k")]
    [InlineData("h:70000", "stats", "--server", "h:70000")]
    [InlineData("127.0.0.1:0", "bench", "--target", "memcached", "--server", "127.0.0.1:0", "--duration", "0.1")]
    [InlineData(":7380", "bench", "--trace", "TRACE", "--capacity", "1", "--target", "redis", "--server", ":7380")]
    [InlineData("[::1]", "stats", "export", "--server", "[::1]", "--output", "OUT")]
    public async Task A_server_that_is_not_host_and_port_is_a_usage_error_naming_the_option_and_the_form(string bad, params string[] args)
    {
        var trace = Path.Combine(fixture.TempDir, "one-request.jsonl");
        await File.WriteAllTextAsync(trace, "{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [1]}\n");
        args = [.. args.Select(a => a switch { "TRACE" => trace, "OUT" => Path.Combine(fixture.TempDir, "stats.json"), _ => a })];
        var r = await Cli.RunAsync(args);
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"--server: '{bad}' is not HOST:PORT (port 1..65535)", line);
    }

    [Fact]
    public async Task An_arena_larger_than_the_host_can_give_names_the_memory_available_and_exits_2()
    {
        var r = await Cli.RunAsync("serve", "--port", "0", "--admin-port", "off", "--memory", "7TiB");
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Matches(@"cannot allocate an arena of 7 TiB: [\d.]+ [KMGT]iB of memory available.*; lower --memory", line);
    }

    [Fact]
    public async Task A_disk_capacity_above_the_filesystems_free_space_is_refused_with_exit_2()
    {
        var dir = Path.Combine(fixture.TempDir, "disk");
        var r = await Cli.RunAsync("config", "--disk", dir, "--disk-capacity", "4096TiB");
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"--disk-capacity 4096 TiB is more than {dir} can hold", line);
        Assert.Contains("free on its filesystem; lower --disk-capacity", line);
        Assert.Equal(0, (await Cli.RunAsync("config", "--disk", dir, "--disk-capacity", "64MiB")).ExitCode);
    }

    [Fact]
    public async Task A_node_option_at_the_top_level_of_the_config_file_is_refused_and_an_unknown_top_level_key_is_reported()
    {
        var misplaced = Path.Combine(fixture.TempDir, "misplaced.yaml");
        await File.WriteAllTextAsync(misplaced, "servers: 127.0.0.1:7380\nmemory: 64MiB\n");
        var r = await Cli.RunWithEnvironmentAsync([("KVASIR_CONFIG", misplaced)], "config");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("'memory' is a node option at the top level", Assert.Single(r.ErrLines));
        var unknown = Path.Combine(fixture.TempDir, "unknown.yaml");
        await File.WriteAllTextAsync(unknown, "servers: 127.0.0.1:7380\nmemroy: 1\nnode:\n  memory: 32MiB\n");
        var u = await Cli.RunWithEnvironmentAsync([("KVASIR_CONFIG", unknown)], "config");
        Assert.Equal(0, u.ExitCode);
        Assert.Contains("top-level key 'memroy' is neither a client setting nor node:", Assert.Single(u.ErrLines));
        Assert.Contains("32MiB", u.Out);   // the node: section still applies
    }

    [Fact]
    public async Task Ports_in_use_name_the_flag_that_moves_them()
    {
        var data = await Cli.RunAsync("serve", "--port", fixture.Serve.Port.ToString(), "--admin-port", "off", "--memory", "1MiB");
        Assert.Equal(1, data.ExitCode);
        Assert.Contains("address already in use (another node on this port?): pick another with --port", Assert.Single(data.ErrLines));
        var admin = await Cli.RunAsync("serve", "--port", "0", "--admin-port", fixture.Admin.Split(':')[1], "--memory", "1MiB");
        Assert.Equal(1, admin.ExitCode);
        Assert.Contains("pick another with --admin-port", Assert.Single(admin.ErrLines));
    }

    [Theory]
    [InlineData("tcp", "tcp")]
    [InlineData("shm", "shm")]
    public async Task Bench_names_the_transport_in_every_text_line_and_json_object(string flag, string expected)
    {
        // One request in flight: four batches of 64 x 64 KiB reserved at once would be the fixture's whole 16 MiB arena
        // (over shared memory a batch is reserved before it is written), and the test is about naming, not capacity.
        string[] common = ["bench", "--server", Server, "--transport", flag, "--op", "put,get", "--value-size", "64KiB", "--keys", "16",
            "--inflight", "1", "--duration", "0.2", "--warmup", "0", "--no-progress"];
        var text = await Cli.RunAsync(common);
        Assert.Equal(0, text.ExitCode);
        Assert.Equal(2, text.OutLines.Length);
        Assert.All(text.OutLines, l => Assert.StartsWith($"kvasir over {expected} ", l));
        var json = await Cli.RunAsync([.. common, "--json"]);
        Assert.Equal(0, json.ExitCode);
        Assert.Equal(2, json.OutLines.Length);
        Assert.All(json.OutLines, l => Assert.Equal(expected, JsonDocument.Parse(l).RootElement.GetProperty("transport").GetString()));
    }

    [Fact]
    public async Task Bench_of_the_in_process_node_names_inproc()
    {
        var r = await Cli.RunAsync("bench", "--target", "inproc", "--memory", "32MiB", "--value-size", "64KiB", "--keys", "16",
            "--duration", "0.2", "--warmup", "0", "--no-progress", "--json");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("inproc", JsonDocument.Parse(Assert.Single(r.OutLines)).RootElement.GetProperty("transport").GetString());
    }
}
