using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Kvasir.Client;

namespace Kvasir.Cli.Tests;

/// <summary>One <c>kvasir serve --port 0</c> process shared by the tests of <see cref="EndToEndTests"/>.</summary>
public sealed class ServeFixture : IAsyncLifetime
{
    public ServeProcess Serve { get; private set; } = null!;
    public string TempDir { get; } = Directory.CreateTempSubdirectory("kvasir-cli-tests-").FullName;

    public async Task InitializeAsync() => Serve = await ServeProcess.StartAsync("--port", "0", "--memory", "64MB");

    public async Task DisposeAsync()
    {
        if (Serve is not null) await Serve.DisposeAsync();
        try { Directory.Delete(TempDir, recursive: true); } catch (IOException) { }
    }
}

public class EndToEndTests(ServeFixture fixture) : IClassFixture<ServeFixture>
{
    private string Server => fixture.Serve.Server;

    private string TempFile(string name) => Path.Combine(fixture.TempDir, $"{name}-{Guid.NewGuid():N}");

    private static string UniqueKey(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    [Fact]
    public async Task Serve_on_port_zero_prints_the_bound_port_and_the_node_answers_ping_there()
    {
        Assert.NotEqual(0, fixture.Serve.Port);
        var r = await Cli.RunAsync("ping", "--server", Server);
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"^pong from 127\.0\.0\.1:\d+ in \d+\.\d\d ms$", Assert.Single(r.OutLines));
        Assert.Equal("", r.Stderr);
    }

    [Fact]
    public async Task Put_from_a_file_then_get_to_a_file_round_trips_3MB_byte_for_byte()
    {
        var data = RandomNumberGenerator.GetBytes(3_000_000);
        var input = TempFile("in");
        var output = TempFile("out");
        await File.WriteAllBytesAsync(input, data);
        var key = UniqueKey("file");

        var put = await Cli.RunAsync("put", "--server", Server, key, input);
        Assert.True(put.ExitCode == 0, put.ToString());
        Assert.Equal("", put.Out);
        var get = await Cli.RunAsync("get", "--server", Server, key, output);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(data, await File.ReadAllBytesAsync(output));
    }

    [Fact]
    public async Task Put_with_dash_reads_the_value_from_stdin()
    {
        var data = RandomNumberGenerator.GetBytes(200_000);
        var key = UniqueKey("stdin");
        var put = await Cli.RunWithInputAsync(data, "put", "--server", Server, key, "-");
        Assert.True(put.ExitCode == 0, put.ToString());
        var get = await Cli.RunAsync("get", "--server", Server, key);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(data, get.Stdout);
    }

    [Fact]
    public async Task Get_without_a_file_writes_the_exact_bytes_to_stdout()
    {
        // Every byte value, CR/LF pairs, NULs and invalid UTF-8: nothing may be translated or appended.
        var data = Enumerable.Range(0, 256).Select(i => (byte)i)
            .Concat("\r\n\n\r\0\0"u8.ToArray()).Concat(new byte[] { 0xff, 0xfe, 0xc3, 0x28 }).Concat(RandomNumberGenerator.GetBytes(70_000)).ToArray();
        var input = TempFile("bin");
        await File.WriteAllBytesAsync(input, data);
        var key = UniqueKey("binary");
        Assert.Equal(0, (await Cli.RunAsync("put", "--server", Server, key, input)).ExitCode);

        var get = await Cli.RunAsync("get", "--server", Server, key);
        Assert.Equal(0, get.ExitCode);
        Assert.Equal(data, get.Stdout);
        Assert.Equal("", get.Stderr);
    }

    [Fact]
    public async Task An_empty_value_round_trips_as_empty()
    {
        var key = UniqueKey("empty");
        Assert.Equal(0, (await Cli.RunWithInputAsync([], "put", "--server", Server, key, "-")).ExitCode);
        var get = await Cli.RunAsync("get", "--server", Server, key);
        Assert.Equal(0, get.ExitCode);
        Assert.Empty(get.Stdout);
        var exists = await Cli.RunAsync("exists", "--server", Server, key);
        Assert.Equal(["1"], exists.OutLines);
    }

    [Fact]
    public async Task Get_of_a_missing_key_exits_1_with_a_one_line_message_on_stderr_and_nothing_on_stdout()
    {
        var key = UniqueKey("missing");
        var r = await Cli.RunAsync("get", "--server", Server, key);
        Assert.Equal(1, r.ExitCode);
        Assert.Empty(r.Stdout);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains(key, line);
        Assert.Contains("not found", line);
    }

    [Fact]
    public async Task Get_of_a_missing_key_into_a_file_does_not_create_the_file()
    {
        var output = TempFile("never");
        var r = await Cli.RunAsync("get", "--server", Server, UniqueKey("missing"), output);
        Assert.Equal(1, r.ExitCode);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task Exists_prints_1_or_0_per_key_in_argument_order()
    {
        string a = UniqueKey("a"), b = UniqueKey("b");
        Assert.Equal(0, (await Cli.RunWithInputAsync("x"u8.ToArray(), "put", "--server", Server, a, "-")).ExitCode);
        var r = await Cli.RunAsync("exists", "--server", Server, a, b, a);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(["1", "0", "1"], r.OutLines);
    }

    [Fact]
    public async Task Rm_prints_each_keys_result_and_the_key_is_gone_afterwards()
    {
        string a = UniqueKey("rm-a"), b = UniqueKey("rm-b");
        Assert.Equal(0, (await Cli.RunWithInputAsync("value"u8.ToArray(), "put", "--server", Server, a, "-")).ExitCode);
        var r = await Cli.RunAsync("rm", "--server", Server, a, b);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal([$"{a}\tOk", $"{b}\tNotFound"], r.OutLines);
        Assert.Equal(["0"], (await Cli.RunAsync("exists", "--server", Server, a)).OutLines);
        Assert.Equal(1, (await Cli.RunAsync("get", "--server", Server, a)).ExitCode);
    }

    [Fact]
    public async Task Stats_prints_sorted_name_tab_value_lines_including_keys_and_capacity()
    {
        Assert.Equal(0, (await Cli.RunWithInputAsync("v"u8.ToArray(), "put", "--server", Server, UniqueKey("stats"), "-")).ExitCode);
        var r = await Cli.RunAsync("stats", "--server", Server);
        Assert.Equal(0, r.ExitCode);
        var stats = new Dictionary<string, long>();
        foreach (var line in r.OutLines)
        {
            var parts = line.Split('\t');
            Assert.True(parts.Length == 2, $"not name<TAB>value: '{line}'");
            Assert.True(long.TryParse(parts[1], out long v), $"value is not an integer: '{line}'");
            stats.Add(parts[0], v);
        }
        Assert.Equal(stats.Keys.Order(StringComparer.Ordinal), stats.Keys);
        Assert.True(stats["keys"] >= 1);
        Assert.Equal(64_000_000, stats["capacity_bytes"]);
        // The put went over shared memory (the node is on this host): ALLOC + COMMIT instead of PUT.
        Assert.True(stats["requests_put"] + stats["requests_commit"] >= 1);
    }

    [Fact]
    public async Task Transport_flag_picks_shm_or_tcp_and_both_see_the_same_bytes()
    {
        var data = RandomNumberGenerator.GetBytes(200_000);
        var input = TempFile("in");
        var output = TempFile("out");
        await File.WriteAllBytesAsync(input, data);
        var key = UniqueKey("transport");
        var put = await Cli.RunAsync("put", "--server", Server, "--transport", "shm", key, input);
        Assert.True(put.ExitCode == 0, put.ToString());
        var get = await Cli.RunAsync("get", "--server", Server, "--transport", "tcp", key, output);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(data, await File.ReadAllBytesAsync(output));
        var bad = await Cli.RunAsync("get", "--server", Server, "--transport", "udp", key, output);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("--transport must be auto, tcp or shm", bad.Stderr);
    }

    [Fact]
    public async Task Hex_keys_address_binary_keys_and_equal_the_same_bytes_given_as_text()
    {
        var data = RandomNumberGenerator.GetBytes(1000);
        var input = TempFile("hex");
        await File.WriteAllBytesAsync(input, data);
        var raw = RandomNumberGenerator.GetBytes(12);
        raw[0] = 0x00; raw[1] = 0xff;
        string hexKey = "hex:" + Convert.ToHexString(raw).ToLowerInvariant();
        Assert.Equal(0, (await Cli.RunAsync("put", "--server", Server, hexKey, input)).ExitCode);
        var get = await Cli.RunAsync("get", "--server", Server, "hex:" + Convert.ToHexString(raw));   // upper case hex too
        Assert.Equal(0, get.ExitCode);
        Assert.Equal(data, get.Stdout);

        string text = UniqueKey("text");
        Assert.Equal(0, (await Cli.RunWithInputAsync("t"u8.ToArray(), "put", "--server", Server, text, "-")).ExitCode);
        var viaHex = await Cli.RunAsync("exists", "--server", Server, "hex:" + Convert.ToHexString(Encoding.UTF8.GetBytes(text)));
        Assert.Equal(["1"], viaHex.OutLines);
    }

    [Fact]
    public async Task An_invalid_hex_key_is_a_usage_error_with_exit_2()
    {
        var r = await Cli.RunAsync("get", "--server", Server, "hex:zz");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("hex:zz", Assert.Single(r.ErrLines));
    }

    [Theory]
    [InlineData("put", "--bogus", "k", "f")]
    [InlineData("get")]
    [InlineData("put", "onlykey")]
    [InlineData("exists")]
    [InlineData("stats", "extra")]
    [InlineData("ping", "--timeout", "0")]
    [InlineData("get", "k", "--server")]
    [InlineData("frobnicate")]
    [InlineData("serve", "--port", "70000")]
    [InlineData("serve", "--memory", "lots")]
    [InlineData("serve", "--auth-key", "abc")]
    [InlineData("serve", "--log-level", "chatty", "--port", "0")]
    [InlineData("serve", "--block-size", "4GiB", "--memory", "8GiB")]
    [InlineData("bench", "--value-size", "4GiB")]
    [InlineData("bench", "--op", "delete")]
    public async Task Bad_arguments_exit_2_with_one_line_on_stderr(params string[] args)
    {
        var r = await Cli.RunAsync(args);
        Assert.True(r.ExitCode == 2, r.ToString());
        var line = Assert.Single(r.ErrLines);
        Assert.StartsWith("kvasir ", line);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public async Task Putting_a_file_that_does_not_exist_exits_2_naming_it()
    {
        var missing = TempFile("nope");
        var r = await Cli.RunAsync("put", "--server", Server, "k", missing);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(missing, Assert.Single(r.ErrLines));
    }

    [Fact]
    public async Task Getting_into_a_path_that_cannot_be_written_fails_with_one_line_and_no_stack_trace()
    {
        var key = UniqueKey("unwritable");
        Assert.Equal(0, (await Cli.RunWithInputAsync("v"u8.ToArray(), "put", "--server", Server, key, "-")).ExitCode);
        var r = await Cli.RunAsync("get", "--server", Server, key, Path.Combine(fixture.TempDir, "no-such-dir", "out"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("cannot write", Assert.Single(r.ErrLines));
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public async Task Connecting_to_a_closed_port_exits_3_with_a_one_line_error()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }
        var r = await Cli.RunAsync("ping", "--server", $"127.0.0.1:{port}");
        Assert.Equal(3, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains($"127.0.0.1:{port}", line);
        Assert.Contains("cannot connect", line);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public async Task A_second_serve_on_the_same_port_exits_1_with_a_one_line_cannot_listen_message()
    {
        var r = await Cli.RunAsync("serve", "--port", fixture.Serve.Port.ToString(), "--memory", "1MiB");
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains("cannot listen", line);
        Assert.Contains($":{fixture.Serve.Port}", line);
        // The first node still serves.
        Assert.Equal(0, (await Cli.RunAsync("ping", "--server", Server)).ExitCode);
    }

    [Fact]
    public async Task Help_for_each_verb_exits_0_and_no_arguments_exits_2()
    {
        foreach (var verb in new[] { "serve", "bench", "get" })
        {
            var r = await Cli.RunAsync(verb, "--help");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains($"kvasir {verb}", r.Out);
        }
        Assert.Equal(2, (await Cli.RunAsync()).ExitCode);
    }

    [Fact]
    public async Task Version_is_printed_alone_and_after_any_verb()
    {
        foreach (var args in new[] { new[] { "--version" }, ["version"], ["serve", "--version"], ["get", "--server", Server, "--version"] })
        {
            var r = await Cli.RunAsync(args);
            Assert.Equal(0, r.ExitCode);
            Assert.Matches(@"^kvasir \d+\.\d+\.\d+\S* \(\.NET \d+[^;]*; crc32c (fold512|fold256|fold128|crc32x3|software)\)", r.Out);
        }
    }
}

public class AuthEndToEndTests
{
    private const string Key = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    private const string OtherKey = "0000000000000000000000000000000000000000000000000000000000000001";

    [Fact]
    public async Task A_node_with_an_auth_key_refuses_clients_without_the_key_and_serves_clients_with_it()
    {
        await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB", "--auth-key", Key);

        var none = await Cli.RunAsync("ping", "--server", serve.Server);
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("auth", Assert.Single(none.ErrLines), StringComparison.OrdinalIgnoreCase);
        Assert.Equal("", none.Out);

        var wrong = await Cli.RunWithInputAsync("secret"u8.ToArray(), "put", "--server", serve.Server, "--auth-key", OtherKey, "k", "-");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("authenticat", Assert.Single(wrong.ErrLines), StringComparison.OrdinalIgnoreCase);

        var put = await Cli.RunWithInputAsync("secret"u8.ToArray(), "put", "--server", serve.Server, "--auth-key", Key, "k", "-");
        Assert.True(put.ExitCode == 0, put.ToString());
        var get = await Cli.RunAsync("get", "--server", serve.Server, "--auth-key", Key.ToUpperInvariant(), "k");
        Assert.Equal(0, get.ExitCode);
        Assert.Equal("secret"u8.ToArray(), get.Stdout);
        var ping = await Cli.RunAsync("ping", "--server", serve.Server, $"--auth-key={Key}");
        Assert.Equal(0, ping.ExitCode);
    }

    [Fact]
    public async Task Every_client_verb_takes_the_key_from_KVASIR_AUTH_KEY_alone()
    {
        // before: the CLI ignored KVASIR_AUTH_KEY (docs/operations.md says clients read it)
        await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB", "--auth-key", Key);
        (string, string)[] env = [("KVASIR_AUTH_KEY", Key)];
        var put = await Cli.RunWithEnvironmentAsync(env, "put", "--server", serve.Server, "k", Path.Combine(AppContext.BaseDirectory, "kvasir.dll"));
        Assert.True(put.ExitCode == 0, put.ToString());
        foreach (var args in new[] { new[] { "exists", "k" }, ["stats"], ["ping"], ["get", "k", Path.Combine(Path.GetTempPath(), $"kv-{Guid.NewGuid():N}")], ["rm", "k"] })
        {
            var r = await Cli.RunWithEnvironmentAsync(env, [args[0], "--server", serve.Server, .. args[1..]]);
            Assert.True(r.ExitCode == 0, $"{args[0]}: {r}");
        }
        var status = await Cli.RunWithEnvironmentAsync(env, "status", "--server", serve.Server);
        Assert.True(status.ExitCode == 0, status.ToString());
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Keygen_writes_a_private_key_file_that_the_node_and_the_clients_read_and_a_shared_file_is_refused()
    {
        string dir = Directory.CreateTempSubdirectory("kvasir-keys-").FullName;
        try
        {
            string file = Path.Combine(dir, "keys", "auth.key");   // the directory is made, private
            var gen = await Cli.RunAsync("keygen", file);
            Assert.True(gen.ExitCode == 0, gen.ToString());
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(file)!));
            Assert.Contains($"--auth-key-file {file}", gen.Out);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            string key = File.ReadAllText(file);
            var again = await Cli.RunAsync("keygen", file);   // as a README run twice does: the key is kept
            Assert.Equal(0, again.ExitCode);
            Assert.Contains("kept it", again.Out);
            Assert.Equal(key, File.ReadAllText(file));

            await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB", "--auth-key-file", file);
            Assert.NotEqual(0, (await Cli.RunAsync("ping", "--server", serve.Server)).ExitCode);   // the key is on
            Assert.Equal(0, (await Cli.RunAsync("ping", "--server", serve.Server, "--auth-key-file", file)).ExitCode);
            Assert.Equal(0, (await Cli.RunWithEnvironmentAsync([("KVASIR_AUTH_KEY_FILE", file)], "ping", "--server", serve.Server)).ExitCode);
            // the admin endpoint (bearer token from the same key) too, as the README's `stats export` uses it
            string export = Path.Combine(dir, "node.json");
            string admin = System.Text.RegularExpressions.Regex.Match(serve.Stdout, @"admin on http://([^/]+)/").Groups[1].Value;
            var exported = await Cli.RunWithEnvironmentAsync([("KVASIR_AUTH_KEY_FILE", file)], "stats", "export", "--server", serve.Server, "--admin", admin, "--output", export);
            Assert.True(exported.ExitCode == 0, exported.ToString());
            Assert.True(File.Exists(export));

            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
            var shared = await Cli.RunAsync("ping", "--server", serve.Server, "--auth-key-file", file);
            Assert.Equal(2, shared.ExitCode);
            Assert.Equal($"kvasir ping: --auth-key-file: {file} is readable by other users (mode 0604); run chmod 600 {file}", Assert.Single(shared.ErrLines));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public async Task A_client_with_a_key_refuses_a_node_without_auth()
    {
        await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB");
        var r = await Cli.RunAsync("ping", "--server", serve.Server, "--auth-key", Key);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("auth", Assert.Single(r.ErrLines), StringComparison.OrdinalIgnoreCase);
    }
}

public class SignalEndToEndTests
{
    [Fact]
    public async Task Sigterm_on_an_idle_node_exits_0_and_logs_stopped()
    {
        await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "16MiB");
        Cli.SendSigterm(serve.Process);
        Assert.True(await serve.WaitForExitAsync(TimeSpan.FromSeconds(15)), "serve did not exit after SIGTERM");
        Assert.Equal(0, serve.Process.ExitCode);
        Assert.Contains("stopped", serve.Stdout);
        Assert.DoesNotContain("Unhandled", serve.Stderr);
        Assert.DoesNotContain("Unhandled", serve.Stdout);
    }

    [Fact]
    public async Task Sigterm_during_a_large_put_lets_the_put_finish_with_Ok_then_exits_0()
    {
        const int values = 24, size = 8 << 20;
        await using var serve = await ServeProcess.StartAsync("--port", "0", "--memory", "256MiB", "--max-value", "8MiB");
        // Over TCP: the drain under test is that of a PUT frame whose payload is still arriving (a local
        // node would otherwise be reached through shared memory, where a batch lands in one COMMIT).
        var options = new KvStoreOptions { Server = serve.Server, ConnectionsPerNode = 1, RequestTimeout = TimeSpan.FromSeconds(20), Transport = KvTransportKind.Tcp };
        await using var writer = await KvStore.ConnectAsync(options);
        await using var monitor = await KvStore.ConnectAsync(options);

        var keys = Enumerable.Range(0, values).Select(i => (ReadOnlyMemory<byte>)Encoding.ASCII.GetBytes($"big-{i}")).ToArray();
        var data = Enumerable.Range(0, values).Select(i => (ReadOnlyMemory<byte>)Kvasir.Cli.Bench.ValuePattern.Create(i, size)).ToArray();
        long baseline = (await monitor.StatsAsync())["bytes_in"];

        var put = Task.Run(() => writer.PutAsync(keys, data));
        // Signal once the node has received at least one whole value of the batch: the frame is then mid-way.
        bool midway = false;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (!put.IsCompleted && DateTime.UtcNow < deadline)
        {
            if ((await monitor.StatsAsync())["bytes_in"] - baseline >= size) { midway = !put.IsCompleted; break; }
        }
        Cli.SendSigterm(serve.Process);

        var statuses = await put.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.All(statuses, s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(await serve.WaitForExitAsync(TimeSpan.FromSeconds(20)), "serve did not exit after SIGTERM");
        Assert.Equal(0, serve.Process.ExitCode);
        Assert.Contains("stopped", serve.Stdout);
        Assert.True(midway, "the put finished before the signal could be sent mid-way; the drain was not exercised");
    }
}
