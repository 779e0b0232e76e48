using Kvasir.Client;
using Kvasir.Cluster;

namespace Kvasir.Cli;

/// <summary><c>kvasir cluster set|get</c>: the cluster-wide settings kept in the registry (docs/cluster.md § Cluster settings).</summary>
public static class ClusterCommand
{
    public const string Help = """
        kvasir cluster set NAME=VALUE... --redis URL [--redis-ca PEM] [--cluster NAME]   store cluster-wide settings
        kvasir cluster get --redis URL [--redis-ca PEM] [--cluster NAME]                 print them, one NAME=VALUE a line
          Settings: replicas=N (1..16): copies of each value for every client that does not say --replicas
          (.NET Replicas, Python replicas); clients read it when they connect. NAME= (empty) removes a setting.
        """;

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ["redis", "redis-ca", "cluster", "timeout"], []);
        var p = cl.Positionals;
        if (p.Count == 0 || p[0] is not ("set" or "get")) throw new UsageException("cluster needs set NAME=VALUE... or get");
        if (p[0] == "get" && p.Count != 1) throw new UsageException("cluster get takes no arguments");
        if (p[0] == "set" && p.Count == 1) throw new UsageException("cluster set needs NAME=VALUE, e.g. replicas=2");
        var url = cl.Get("redis") ?? throw new UsageException("cluster needs --redis URL (the registry the nodes use)");
        var cluster = cl.Get("cluster", "default");
        var timeout = TimeSpan.FromSeconds(cl.Int("timeout", 5, 1));
        var settings = new List<(string Name, string Value)>();
        RedisUrl parsed;
        try
        {
            parsed = RedisUrl.Parse(url, cl.Get("redis-ca"));
            RedisClusterRegistry.ValidateClusterName(cluster);
            foreach (var pair in p.Skip(1))
            {
                int eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0) throw new FormatException($"'{pair}' is not NAME=VALUE (e.g. replicas=2)");
                var (name, value) = (pair[..eq], pair[(eq + 1)..]);
                if (value.Length > 0) ClusterSettings.Validate(name, value);
                settings.Add((name, value));
            }
        }
        catch (FormatException ex) { throw new UsageException(ex.Message); }
        try
        {
            await using var registry = await RedisClusterRegistry.ConnectAsync(parsed, cluster, timeout);
            foreach (var (name, value) in settings) await registry.WriteSettingAsync(name, value);
            var now = await registry.ReadSettingsAsync();
            if (now.Values.Count == 0) Console.Error.WriteLine($"cluster '{cluster}' at {RedisUrl.Redact(url)} has no settings (clients use replicas=1)");
            foreach (var (name, value) in now.Values.OrderBy(v => v.Key, StringComparer.Ordinal)) Console.WriteLine($"{name}={value}");
            return 0;
        }
        catch (ClusterRegistryException ex) { throw new KvasirException($"cluster '{cluster}' at {RedisUrl.Redact(url)}: {ex.Message}"); }
        catch (FormatException ex) { throw new KvasirException($"cluster '{cluster}' at {RedisUrl.Redact(url)}: {ex.Message} (fix it with kvasir cluster set)"); }
    }
}
