using System.Net.Sockets;
using System.Runtime.InteropServices;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;

namespace Kvasir.Cli;

/// <summary><c>kvasir serve</c>: runs a cache node until SIGTERM or Ctrl-C, then drains and exits 0.</summary>
public static class ServeCommand
{
    public const string Help = """
        kvasir serve [options]   run a cache node (embedded defaults: 127.0.0.1:7380, 1 GiB, no auth)

          --host ADDR            data address to bind                 default 127.0.0.1 (loopback only)
          --port N               data port, 0 = any free port         default 7380
          --memory SIZE          arena capacity (64MB, 4GiB, bytes)   default 1GiB
          --max-value SIZE       largest value accepted               default 64MiB or --memory if smaller (at most 1GiB)
          --block-size SIZE      fixed block per value (off = sized)  default off
          --eviction POLICY      lru | prefix (chain tails first)     default lru
          --high-watermark F     start evicting above this fill       default 0.95
          --low-watermark F      evict down to this fill              default 0.90
          --auth-key HEX         64 hex chars; clients must prove it  default none (anyone on the port may read/write)
          --lease-timeout SEC    a reader that stalls longer is cut   default 30
          --frame-timeout SEC    a started frame must finish within   default 30
          --max-batch N          keys per request                     default 8192
          --max-connections N    open connections                     default 4096
          --log-level LEVEL      trace|debug|information|warning|error default information
          --disk PATH            local-disk tier: every value also on disk; recovered on restart   default none
          --disk-capacity SIZE   bytes the disk tier may hold (oldest segment dropped beyond)       default 10GiB
          --promote-after N      a value read N times from disk/shared-fs moves into DRAM          default 2
          --hot-fraction F       share of DRAM promoted values may take                            default 0.2
          --shared-fs PATH       shared cold tier: a directory many nodes mount                    default none
          --redis URL            join a cluster: register in this Redis  default none (standalone)
          --cluster NAME         cluster name in Redis                 default default
          --advertise HOST:PORT  address clients use to reach the node default --host:port (set it with --host 0.0.0.0)
          --node-id ID           placement identity (keep it stable)   default the advertised address
          --heartbeat-ttl SEC    node counts as dead after this silence default 5
          --kind KIND            node | embedded (label in kvasir status) default node
        """;

    private static readonly string[] ValueOptions =
        ["host", "port", "memory", "max-value", "block-size", "eviction", "high-watermark", "low-watermark", "auth-key",
         "lease-timeout", "frame-timeout", "max-batch", "max-connections", "log-level",
         "redis", "cluster", "advertise", "node-id", "heartbeat-ttl", "kind",
         "disk", "disk-capacity", "promote-after", "hot-fraction", "shared-fs"];

    public static NodeOptions ParseOptions(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, []);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        byte[]? key = null;
        if (cl.Get("auth-key") is { } hex)
        {
            try { key = AuthHandshake.ParseKey(hex); }
            catch (FormatException ex) { throw new UsageException($"--auth-key: {ex.Message}"); }
        }
        var eviction = cl.Get("eviction", "lru") switch
        {
            "lru" => EvictionPolicyKind.Lru,
            "prefix" => EvictionPolicyKind.PrefixAware,
            var other => throw new UsageException($"--eviction: '{other}' is not lru or prefix"),
        };
        long blockSize = cl.Get("block-size") is "off" or null ? 0 : cl.Size("block-size", 0);
        if (blockSize > int.MaxValue) throw new UsageException($"--block-size: {ByteSize.Format(blockSize)} is larger than the largest block ({int.MaxValue} bytes)");
        long capacity = cl.Size("memory", 1L << 30);
        var store = new StoreOptions
        {
            Capacity = capacity,
            MaxValueBytes = cl.Size("max-value", Math.Min(ProtocolLimits.DefaultMaxValueBytes, capacity)),
            BlockSize = blockSize > 0 ? checked((int)blockSize) : null,
            Eviction = eviction,
            HighWatermark = cl.Double("high-watermark", 0.95),
            LowWatermark = cl.Double("low-watermark", 0.90),
            LeaseTimeout = TimeSpan.FromSeconds(cl.Int("lease-timeout", 30, 1)),
        };
        var options = new NodeOptions
        {
            Host = cl.Get("host", "127.0.0.1"),
            Port = cl.Int("port", 7380, 0, 65535),
            AuthKey = key,
            Store = store,
            FrameTimeout = TimeSpan.FromSeconds(cl.Int("frame-timeout", 30, 1)),
            MaxBatchKeys = cl.Int("max-batch", ProtocolLimits.DefaultMaxBatchKeys, 1),
            MaxConnections = cl.Int("max-connections", 4096, 1),
            NodeId = cl.Get("node-id"),
            Cluster = ParseCluster(cl),
            Tiers = ParseTiers(cl),
        };
        if (!System.Net.IPAddress.TryParse(options.Host, out _)) throw new UsageException($"--host: '{options.Host}' is not an IP address");
        try { options.Validate(); }
        catch (ArgumentException ex) { throw new UsageException(FlagMessage(ex)); }
        return options;
    }

    private static Kvasir.Storage.Tiers.TierOptions? ParseTiers(CommandLine cl)
    {
        string? disk = cl.Get("disk"), shared = cl.Get("shared-fs");
        if (disk is null)
            foreach (var flag in new[] { "disk-capacity" })
                if (cl.Get(flag) is not null) throw new UsageException($"--{flag} needs --disk");
        if (disk is null && shared is null)
        {
            foreach (var flag in new[] { "promote-after", "hot-fraction" })
                if (cl.Get(flag) is not null) throw new UsageException($"--{flag} needs --disk or --shared-fs");
            return null;
        }
        foreach (var (flag, path) in new[] { ("disk", disk), ("shared-fs", shared) })
        {
            if (path is null) continue;
            if (path.Length == 0) throw new UsageException($"--{flag}: empty path");
            if (File.Exists(path)) throw new UsageException($"--{flag}: '{path}' is a file, not a directory");
        }
        double hot = cl.Double("hot-fraction", 0.2);
        if (hot is < 0 or > 1) throw new UsageException("--hot-fraction: must be between 0 and 1");
        return new Kvasir.Storage.Tiers.TierOptions
        {
            DiskPath = disk,
            DiskCapacity = cl.Size("disk-capacity", 10L << 30),
            PromoteAfter = cl.Int("promote-after", 2, 1),
            HotFraction = hot,
            SharedFsPath = shared,
        };
    }

    private static ClusterJoinOptions? ParseCluster(CommandLine cl)
    {
        var redis = cl.Get("redis");
        if (redis is null)
        {
            foreach (var flag in new[] { "cluster", "advertise", "heartbeat-ttl", "kind" })
                if (cl.Get(flag) is not null) throw new UsageException($"--{flag} needs --redis");
            return null;
        }
        try { Kvasir.Cluster.RedisUrl.Parse(redis); }
        catch (FormatException ex) { throw new UsageException($"--redis: {ex.Message}"); }
        var host = cl.Get("host", "127.0.0.1");
        if (cl.Get("advertise") is null && (host is "0.0.0.0" or "::"))
            throw new UsageException($"--advertise HOST:PORT is needed with --host {host}: clients cannot connect to {host}");
        if (cl.Get("advertise") is { } a && !Kvasir.Cluster.Endpoint.TryParse(a, out _)) throw new UsageException($"--advertise: '{a}' is not HOST:PORT");
        double ttl = cl.Double("heartbeat-ttl", 5);
        if (ttl is < 0.4 or > 3600) throw new UsageException("--heartbeat-ttl: must be 0.4..3600 seconds");
        var name = cl.Get("cluster", "default");
        try { Kvasir.Cluster.RedisClusterRegistry.ValidateClusterName(name); }
        catch (FormatException ex) { throw new UsageException($"--cluster: {ex.Message}"); }
        var kind = cl.Get("kind", "node");
        if (kind is not ("node" or "embedded")) throw new UsageException($"--kind: '{kind}' is not node or embedded");
        return new ClusterJoinOptions { RedisUrl = redis, Name = name, Advertise = cl.Get("advertise"), HeartbeatTtl = TimeSpan.FromSeconds(ttl), Kind = kind };
    }

    /// <summary>Store settings are named by their flags in errors, not by their property names.</summary>
    private static readonly Dictionary<string, string> Flags = new()
    {
        ["Capacity"] = "--memory", ["MaxValueBytes"] = "--max-value", ["BlockSize"] = "--block-size",
        ["HighWatermark"] = "--high-watermark", ["LowWatermark"] = "--low-watermark", ["LeaseTimeout"] = "--lease-timeout",
        ["node id"] = "--node-id", ["disk capacity"] = "--disk-capacity", ["promote-after"] = "--promote-after",
    };

    private static string FlagMessage(ArgumentException ex)
    {
        var message = ex.ParamName is null ? ex.Message : ex.Message.Replace($" (Parameter '{ex.ParamName}')", "");
        foreach (var (property, flag) in Flags) message = message.Replace(property, flag);
        return message;
    }

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var options = ParseOptions(args);
        var level = CommandLine.Parse(args, ValueOptions, []).Get("log-level", "information");
        if (level.Any(char.IsDigit) || !Enum.TryParse<LogLevel>(level, ignoreCase: true, out var logLevel)) throw new UsageException($"--log-level: '{level}' is not a level");
        using var loggers = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff "; })
            .SetMinimumLevel(logLevel));
        CacheNode node;
        try
        {
            node = new CacheNode(options, loggers);
        }
        catch (OutOfMemoryException)
        {
            Console.Error.WriteLine($"kvasir: cannot allocate an arena of {ByteSize.Format(options.Store.Capacity)}");
            return 1;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"kvasir: cannot open the tiers: {ex.Message}");
            return 1;
        }
        try
        {
            node.Start();
        }
        catch (SocketException ex)
        {
            await node.DisposeAsync();
            Console.Error.WriteLine($"kvasir: cannot listen on {options.Host}:{options.Port}: {ex.SocketErrorCode}");
            return 1;
        }
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        if (node.Tiers?.Disk is { } d)
            Console.Out.WriteLine($"kvasir: disk tier {options.Tiers!.DiskPath}: {d.Stats().First(p => p.Key == "disk_keys").Value} values recovered");
        var cluster = options.Cluster is { } c ? $", cluster {c.Name} via {Kvasir.Cluster.RedisUrl.Parse(c.RedisUrl)} as {node.NodeId}" : "";
        Console.Out.WriteLine($"kvasir: serving on {options.Host}:{node.Port} ({ByteSize.Format(options.Store.Capacity)}, auth {(options.AuthKey is null ? "off" : "on")}{cluster})");
        Console.Out.Flush();
        await stop.Task;
        await node.StopAsync();
        return 0;
    }
}
