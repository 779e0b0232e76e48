using System.Globalization;
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
    public static string Help => ServeOptionTable.Help();

    private static readonly IReadOnlyCollection<string> ValueOptions = ServeOptionTable.Names;

    public static NodeOptions ParseOptions(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, []);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        byte[]? key = null;
        if (cl.Get("auth-key") is not null && cl.Get("auth-key-file") is not null)
            throw new UsageException("give --auth-key or --auth-key-file, not both");
        if ((cl.Get("auth-key-file") is { } keyFile ? AuthKeySource.ReadFile(keyFile, "--auth-key-file") : cl.Get("auth-key")) is { } hex)
        {
            try { key = AuthHandshake.ParseKey(hex); }
            catch (FormatException ex) { throw new UsageException($"--auth-key: {ex.Message}"); }
        }
        var eviction = EvictionNames.Parse(cl.Get("eviction", "chainlfu"), "eviction");
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
            DefaultTtl = KeyOptions.ParseTtl(cl.Get("default-ttl"), "--default-ttl"),
            Namespaces = KeyOptions.ParseQuotas(cl.Get("namespace-quota")),
        };
        var options = new NodeOptions
        {
            Host = cl.Get("host", "127.0.0.1"),
            Port = cl.Int("port", 7380, 0, 65535),
            AuthKey = key,
            TlsCertFile = cl.Get("tls-cert"),
            TlsKeyFile = cl.Get("tls-key"),
            TlsClientCaFile = cl.Get("tls-client-ca"),
            Store = store,
            FrameTimeout = TimeSpan.FromSeconds(cl.Int("frame-timeout", 30, 1)),
            MaxBatchKeys = cl.Int("max-batch", ProtocolLimits.DefaultMaxBatchKeys, 1),
            MaxConnections = cl.Int("max-connections", 4096, 1),
            MaxBufferedMetaBytes = cl.Size("max-buffered-meta", 256L << 20),
            MaxConnectionsPerAddress = cl.Int("max-connections-per-address", 1024, 1),
            HandshakeTimeout = TimeSpan.FromSeconds(cl.Int("handshake-timeout", 10, 1)),
            IdleTimeout = cl.Int("idle-timeout", 0, 0) is var idle and > 0 ? TimeSpan.FromSeconds(idle) : null,
            MaxLeasesPerConnection = cl.Int("max-leases-per-connection", 65_536, 1),
            MaxLeases = cl.Int("max-leases", 1 << 20, 1),
            MaxReservedBytesPerConnection = cl.Get("max-reserved-per-connection") is null ? null : cl.Size("max-reserved-per-connection", 0),
            WithheldFeatures = ParseFeatures(cl.Get("withhold-features", "0")),
            NodeId = cl.Get("node-id"),
            Cluster = ParseCluster(cl),
            Tiers = ParseTiers(cl),
            AdminPort = ParseAdminPort(cl),
            AdminHost = cl.Get("admin-host", "127.0.0.1"),
            AccessLog = cl.Get("access-log"),
            AccessStatsCapacity = cl.Int("access-stats", 100_000, 0, 10_000_000),
            SharedMemory = cl.Get("shm", "on") switch
            {
                "on" => OperatingSystem.IsLinux() && ShmFiles.Fits(capacity),
                "off" => false,
                var other => throw new UsageException($"--shm: '{other}' is not on or off"),
            },
        };
        if (!System.Net.IPAddress.TryParse(options.AdminHost, out _)) throw new UsageException($"--admin-host: '{options.AdminHost}' is not an IP address");
        if (!System.Net.IPAddress.TryParse(options.Host, out _)) throw new UsageException($"--host: '{options.Host}' is not an IP address");
        try { options.Validate(); }
        catch (ArgumentException ex) { throw new UsageException(FlagMessage(ex)); }
        return options;
    }

    public static LogLevel ParseLogLevel(IReadOnlyList<string> args)
    {
        var level = CommandLine.Parse(args, ValueOptions, []).Get("log-level", "information");
        if (level.Any(char.IsDigit) || !Enum.TryParse<LogLevel>(level, ignoreCase: true, out var logLevel) || logLevel == LogLevel.None)
            throw new UsageException($"--log-level: '{level}' is not a level (trace, debug, information, warning, error)");
        return logLevel;
    }

    /// <summary>--withhold-features: feature bits in hex, with or without 0x.</summary>
    private static ulong ParseFeatures(string text)
    {
        var digits = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text;
        if (!ulong.TryParse(digits, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out var bits))
            throw new UsageException($"--withhold-features: '{text}' is not hex feature bits (e.g. 0x20)");
        return bits;
    }

    private static int? ParseAdminPort(CommandLine cl)
    {
        if (cl.Get("admin-port") == "off") return null;
        int data = cl.Int("port", 7380, 0, 65535);
        if (cl.Get("admin-port") is null) return data == 0 ? 0 : data == 65535 ? throw new UsageException("--admin-port: data port 65535 has no port + 1; give --admin-port") : data + 1;
        int admin = cl.Int("admin-port", 0, 0, 65535);
        if (admin != 0 && admin == data) throw new UsageException($"--admin-port: {admin} is the data port");
        return admin;
    }

    private static Kvasir.Storage.Tiers.TierOptions? ParseTiers(CommandLine cl)
    {
        string? disk = cl.Get("disk"), shared = cl.Get("shared-fs");
        if (disk is null)
            foreach (var flag in new[] { "disk-capacity", "disk-sync" })
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
        var sync = cl.Get("disk-sync") switch
        {
            null or "none" => Kvasir.Storage.Tiers.DiskSyncMode.None,
            "batch" => Kvasir.Storage.Tiers.DiskSyncMode.Batch,
            "always" => Kvasir.Storage.Tiers.DiskSyncMode.Always,
            var other => throw new UsageException($"--disk-sync: '{other}' is not none, batch or always"),
        };
        if (hot is < 0 or > 1) throw new UsageException("--hot-fraction: must be between 0 and 1");
        long diskCapacity = cl.Size("disk-capacity", 10L << 30);
        if (disk is not null) CheckDiskRoom(disk, diskCapacity, cl.Get("disk-capacity") is not null);
        return new Kvasir.Storage.Tiers.TierOptions
        {
            DiskPath = disk,
            DiskCapacity = diskCapacity,
            DiskSync = sync,
            PromoteAfter = cl.Int("promote-after", 2, 1),
            HotFraction = hot,
            SharedFsPath = shared,
        };
    }

    /// <summary>
    /// The disk tier may not promise more than its filesystem can hold: free space plus what the tier's directory holds
    /// already (its own segments, recovered at start).
    /// </summary>
    private static void CheckDiskRoom(string path, long capacity, bool given)
    {
        var full = Path.GetFullPath(path);
        var existing = full;
        while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } parent) existing = parent;
        long free, held = 0;
        try
        {
            free = new DriveInfo(existing).AvailableFreeSpace;
            if (Directory.Exists(full))
                held = new DirectoryInfo(full).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return;   // the tier reports an unusable directory itself when it opens
        }
        if (capacity <= free + held) return;
        throw new UsageException($"--disk-capacity {ByteSize.Format(capacity)}{(given ? "" : " (the default)")} is more than {path} can hold: " +
            $"{ByteSize.Approx(free)} free on its filesystem{(held > 0 ? $" plus {ByteSize.Approx(held)} the tier holds" : "")}; lower --disk-capacity or free space");
    }

    private static ClusterJoinOptions? ParseCluster(CommandLine cl)
    {
        var redis = cl.Get("redis");
        if (redis is null)
        {
            foreach (var flag in new[] { "cluster", "advertise", "heartbeat-ttl", "kind", "redis-ca" })
                if (cl.Get(flag) is not null) throw new UsageException($"--{flag} needs --redis");
            return null;
        }
        try { Kvasir.Cluster.RedisUrl.Parse(redis, cl.Get("redis-ca")); }
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
        return new ClusterJoinOptions { RedisUrl = redis, RedisCaFile = cl.Get("redis-ca"), Name = name, Advertise = cl.Get("advertise"), HeartbeatTtl = TimeSpan.FromSeconds(ttl), Kind = kind };
    }

    /// <summary>Store settings are named by their flags in errors, not by their property names.</summary>
    private static readonly Dictionary<string, string> Flags = new()
    {
        ["Capacity"] = "--memory",
        ["MaxValueBytes"] = "--max-value",
        ["BlockSize"] = "--block-size",
        ["HighWatermark"] = "--high-watermark",
        ["LowWatermark"] = "--low-watermark",
        ["LeaseTimeout"] = "--lease-timeout",
        ["node id"] = "--node-id",
        ["disk capacity"] = "--disk-capacity",
        ["promote-after"] = "--promote-after",
    };

    private static string FlagMessage(ArgumentException ex)
    {
        var message = ex.ParamName is null ? ex.Message : ex.Message.Replace($" (Parameter '{ex.ParamName}')", "");
        foreach (var (property, flag) in Flags) message = message.Replace(property, flag);
        return message;
    }

    public static async Task<int> RunAsync(IReadOnlyList<string> commandLine)
    {
        var (args, effective) = ConfigChain.Resolve(commandLine);
        var (options, logLevel) = ConfigChain.Parse(args, effective, a => (ParseOptions(a), ParseLogLevel(a)));
        using var loggers = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff "; })
            .SetMinimumLevel(logLevel));
        CacheNode node;
        try
        {
            node = new CacheNode(options, loggers);
        }
        catch (Kvasir.Net.TlsConfigurationException ex)
        {
            Console.Error.WriteLine($"kvasir: --tls-cert/--tls-key/--tls-client-ca: {ex.Message}");
            return 2;
        }
        catch (OutOfMemoryException)
        {
            Console.Error.WriteLine($"kvasir: cannot allocate an arena of {ByteSize.Format(options.Store.Capacity)}: {MemoryFree(options.SharedMemory)}; lower --memory");
            return 2;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"kvasir: cannot open {(options.AccessLog is not null && ex.Message.Contains(options.AccessLog, StringComparison.Ordinal) ? "the access log" : "the tiers")}: {ex.Message}");
            return 1;
        }
        // The handlers are in place before the port opens: a SIGTERM sent as soon as the port answers (a supervisor,
        // a script) was otherwise lost in the window before them, and the node ran on.
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        try
        {
            node.Start();
        }
        catch (SocketException ex)
        {
            await node.DisposeAsync();
            bool adminPort = ex.Message.StartsWith("admin port", StringComparison.Ordinal);
            bool inUse = ex.SocketErrorCode == SocketError.AddressAlreadyInUse;
            Console.Error.WriteLine(adminPort
                ? $"kvasir: cannot listen on admin port {Kvasir.Cluster.Endpoint.Format(options.AdminHost, options.AdminPort ?? 0)}: " +
                  (inUse ? "address already in use (another node's admin port?): pick another with --admin-port, or --admin-port 0 for a free one" : ex.Message)
                : $"kvasir: cannot listen on {Kvasir.Cluster.Endpoint.Format(options.Host, options.Port)}: " +
                  (inUse ? "address already in use (another node on this port?): pick another with --port, or --port 0 for a free one" : ex.SocketErrorCode.ToString()));
            return 1;
        }
        if (node.Store.HasDisk)
            Console.Out.WriteLine($"kvasir: disk tier {options.Tiers!.DiskPath}: {node.Store.RecoveredKeys} values recovered");
        var cluster = options.Cluster is { } c ? $", cluster {c.Name} via {c.ParsedRedisUrl()} as {node.NodeId}" : "";
        var shm = node.Store.SharedMemoryPath is { } p ? $", shm {p}" : "";
        var admin = node.Admin is null ? "" : $", admin on http://{Kvasir.Cluster.Endpoint.Format(options.AdminHost, node.AdminPort)}/";
        Console.Out.WriteLine($"kvasir: serving on {options.Host}:{node.Port} ({ByteSize.Format(options.Store.Capacity)}, auth {(options.AuthKey is null ? "off" : "on")}, tls {(options.HasTls ? options.TlsClientCaFile is null ? "on" : "on, client certificates required" : "off")}{cluster}{shm}){admin}");
        Console.Out.Flush();
        await stop.Task;
        await node.StopAsync();
        return 0;
    }

    /// <summary>What memory is free for an arena: MemAvailable from /proc/meminfo, and /dev/shm's free space for a shared-memory arena.</summary>
    private static string MemoryFree(bool sharedMemory)
    {
        var parts = new List<string>();
        try
        {
            var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemAvailable:", StringComparison.Ordinal));
            if (line is not null && long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture, out long kib))
                parts.Add($"{ByteSize.Approx(kib * 1024)} of memory available");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        if (sharedMemory)
        {
            try { parts.Add($"{ByteSize.Approx(new DriveInfo("/dev/shm").AvailableFreeSpace)} free in /dev/shm"); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException) { }
        }
        return parts.Count == 0 ? "free memory unknown" : string.Join(", ", parts);
    }
}
