using System.Net;
using System.Net.Sockets;
using Kvasir.Cli;

namespace Kvasir.Cli.Tests;

/// <summary>The configuration chain: YAML file, then KVASIR_* environment, then flags; and its errors.</summary>
public sealed class ConfigChainTests : IDisposable
{
    private readonly string _file = Path.GetTempFileName();

    public void Dispose() => File.Delete(_file);

    private static Func<string, string?> Env(params (string, string)[] vars) => name => vars.FirstOrDefault(v => v.Item1 == name).Item2;

    [Fact]
    public void Later_sources_win_and_each_value_says_where_it_came_from()
    {
        File.WriteAllText(_file, """
            servers: 127.0.0.1:7380   # client keys at the top level are not the node's
            node:
              memory: 2GiB
              max_value: 16MiB
              port: 7400
              eviction: prefix
            """);
        var (args, effective) = ConfigChain.Resolve(["--config", _file, "--port", "7500"], Env(("KVASIR_MAX_VALUE", "32MiB"), ("KVASIR_SERVERS", "x")));
        var options = ServeCommand.ParseOptions(args);
        Assert.Equal(2L << 30, options.Store.Capacity);              // file
        Assert.Equal(32L << 20, options.Store.MaxValueBytes);        // env over file
        Assert.Equal(7500, options.Port);                            // flag over file
        Assert.Equal(Kvasir.Storage.EvictionPolicyKind.PrefixAware, options.Store.Eviction);
        string Source(string name) => effective.Single(s => s.Option.Name == name).Source;
        Assert.Equal($"file {_file}", Source("memory"));
        Assert.Equal("env KVASIR_MAX_VALUE", Source("max-value"));
        Assert.Equal("flag", Source("port"));
        Assert.Equal("default", Source("host"));
    }

    [Fact]
    public void Kvasir_config_names_the_file_from_the_environment_too()
    {
        File.WriteAllText(_file, "node:\n  memory: 512MiB\n");
        var (args, effective) = ConfigChain.Resolve([], Env(("KVASIR_CONFIG", _file)));
        Assert.Equal(512L << 20, ServeCommand.ParseOptions(args).Store.Capacity);
        Assert.Equal($"file {_file}", effective.Single(s => s.Option.Name == "memory").Source);
    }

    [Theory]
    [InlineData("node:\n  memroy: 1GiB\n", "unknown option 'memroy'")]
    [InlineData("node:\n  memory: [1, 2]\n", "node.memory must be a single value")]
    [InlineData("node: 5\n", "'node' must be a mapping")]
    [InlineData("node:\n  memory: 1GiB\n   bad: indent\n", "not valid YAML")]
    public void A_bad_file_is_a_one_line_error_naming_the_file(string yaml, string expected)
    {
        File.WriteAllText(_file, yaml);
        var ex = Assert.Throws<UsageException>(() => ConfigChain.Resolve(["--config", _file], Env()));
        Assert.Contains(expected, ex.Message);
        Assert.Contains(_file, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void A_bad_value_from_the_environment_is_refused_like_a_bad_flag()
    {
        var (args, _) = ConfigChain.Resolve([], Env(("KVASIR_MEMORY", "lots")));
        var ex = Assert.Throws<UsageException>(() => ServeCommand.ParseOptions(args));
        Assert.Contains("--memory", ex.Message);
    }

    [Fact]
    public void An_error_about_a_value_from_the_environment_or_the_file_names_where_it_came_from()
    {
        var (args, effective) = ConfigChain.Resolve([], Env(("KVASIR_MEMORY", "lots")));
        var ex = Assert.Throws<UsageException>(() => ConfigChain.Parse(args, effective, ServeCommand.ParseOptions));
        Assert.Equal("--memory: 'lots' is not a size (use a byte count, or e.g. 64MB, 4GiB, 512KiB) (from env KVASIR_MEMORY)", ex.Message);

        File.WriteAllText(_file, "node:\n  eviction: mru\n");
        (args, effective) = ConfigChain.Resolve(["--config", _file], Env());
        ex = Assert.Throws<UsageException>(() => ConfigChain.Parse(args, effective, ServeCommand.ParseOptions));
        Assert.EndsWith($"(from file {_file})", ex.Message);

        (args, effective) = ConfigChain.Resolve(["--config", _file, "--eviction", "mru"], Env());
        ex = Assert.Throws<UsageException>(() => ConfigChain.Parse(args, effective, ServeCommand.ParseOptions));
        Assert.DoesNotContain("(from", ex.Message);   // a flag is where the operator just typed it
    }

    [Fact]
    public async Task Serve_with_a_bad_environment_value_exits_2_with_one_line_naming_the_variable()
    {
        var r = await Cli.RunWithEnvironmentAsync([("KVASIR_MAX_BATCH", "0")], "serve", "--port", "0");
        Assert.True(r.ExitCode == 2, r.ToString());
        var line = Assert.Single(r.ErrLines);
        Assert.Contains("--max-batch", line);
        Assert.Contains("KVASIR_MAX_BATCH", line);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public async Task Kvasir_config_checks_the_log_level_as_serve_does()
    {
        var r = await Cli.RunAsync("config", "--log-level", "chatty");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--log-level", Assert.Single(r.ErrLines));
    }

    [Fact]
    public async Task Kvasir_config_prints_every_option_with_its_value_and_source()
    {
        File.WriteAllText(_file, "node:\n  memory: 256MiB\n");
        var r = await Cli.RunAsync("config", "--config", _file, "--port", "0");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(ServeOptionTable.All.Count, r.OutLines.Length);
        Assert.Contains(r.OutLines, l => l.StartsWith("memory ") && l.Contains("256MiB") && l.EndsWith($"file {_file}"));
        Assert.Contains(r.OutLines, l => l.StartsWith("port ") && l.EndsWith("flag"));
        Assert.Contains(r.OutLines, l => l.StartsWith("host ") && l.Contains("127.0.0.1") && l.EndsWith("default"));
    }

    [Theory]
    [InlineData(new[] { "serve", "--memroy", "1GiB" }, "unknown option --memroy")]
    [InlineData(new[] { "serve", "--memory", "12xb" }, "--memory")]
    [InlineData(new[] { "serve", "--auth-key", "abc" }, "--auth-key")]
    [InlineData(new[] { "config", "--memory", "lots" }, "--memory")]
    public async Task Bad_configuration_stops_the_start_with_one_line_and_exit_2(string[] args, string expected)
    {
        var r = await Cli.RunAsync(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.Contains(expected, r.Stderr);
    }

    [Fact]
    public async Task A_port_in_use_stops_the_start_with_one_line_and_exit_1()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var r = await Cli.RunAsync("serve", "--port", port.ToString(), "--admin-port", "off");
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.Contains($"cannot listen on 127.0.0.1:{port}", r.Stderr);
        var admin = await Cli.RunAsync("serve", "--port", "0", "--admin-port", port.ToString());
        Assert.Equal(1, admin.ExitCode);
        Assert.Contains("admin port", admin.Stderr);
    }

    [Fact]
    public void Every_option_is_documented_once_in_operations_md_with_its_default()
    {
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "operations.md"));
        foreach (var o in ServeOptionTable.All)
        {
            var row = doc.Split('\n').Where(l => l.StartsWith($"| `{o.Flag} ", StringComparison.Ordinal)).ToList();
            Assert.True(row.Count == 1, $"{o.Flag}: {row.Count} rows in docs/operations.md");
            Assert.Contains($"`{o.EnvVar}`", row[0]);
            Assert.Contains(o.Default, row[0]);
        }
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props"))) return dir.FullName;
        throw new InvalidOperationException("no repository root");
    }
}
