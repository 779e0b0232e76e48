namespace Kvasir.Cli;

/// <summary>One option of <c>kvasir serve</c>: its flag, its environment variable, its YAML key, its default and unit.</summary>
public sealed record ServeOption(string Name, string Arg, string Default, string Help)
{
    public string Flag => "--" + Name;

    /// <summary>KVASIR_ and the name in upper case with underscores: <c>--max-value</c> → <c>KVASIR_MAX_VALUE</c>.</summary>
    public string EnvVar => "KVASIR_" + Name.ToUpperInvariant().Replace('-', '_');

    /// <summary>The key under <c>node:</c> in the YAML file (dashes or underscores both accepted).</summary>
    public string YamlKey => Name.Replace('-', '_');
}

/// <summary>
/// Every option of <c>kvasir serve</c>, documented once: <c>serve --help</c>, <c>kvasir config</c>,
/// the configuration chain (file, environment, flags) and docs/operations.md (checked by a test)
/// all come from this table. Adding an option is one entry here plus its parsing in ServeCommand.
/// </summary>
public static class ServeOptionTable
{
    public static readonly IReadOnlyList<ServeOption> All =
    [
        new("host", "ADDR", "127.0.0.1", "data address to bind (loopback only by default)"),
        new("port", "N", "7380", "data port; 0 = any free port"),
        new("memory", "SIZE", "1GiB", "arena (DRAM) capacity; sizes: 64MB (10^6), 4GiB (2^30) or bytes"),
        new("max-value", "SIZE", "64MiB", "largest value accepted (at most --memory, at most 1GiB)"),
        new("block-size", "SIZE|off", "off", "fixed block per value instead of sized allocation"),
        new("eviction", "NAME", "chainlfu", "eviction policy: lru | fifo | lfu | s3fifo | prefix | chainlfu | chainsketch (docs/eviction.md)"),
        new("high-watermark", "F", "0.95", "start evicting above this fill of the arena"),
        new("low-watermark", "F", "0.90", "evict down to this fill"),
        new("auth-key", "HEX", "none", "64 hex chars; clients must prove they hold it (none: anyone on the port may read/write); visible in ps: prefer --auth-key-file"),
        new("auth-key-file", "PATH", "none", "file holding the auth key (mode 0600; kvasir keygen PATH writes one)"),
        new("tls-cert", "PATH", "none", "PEM certificate (and chain) of the data port: every TCP connection speaks TLS (with --tls-key); shm data stays local"),
        new("tls-key", "PATH", "none", "PEM private key of --tls-cert"),
        new("tls-client-ca", "PATH", "none", "PEM CA: clients must present a certificate it signed (needs --tls-cert)"),
        new("lease-timeout", "SEC", "30", "a reader that stalls longer than this is cut off"),
        new("default-ttl", "SEC|off", "off", "values whose PUT names no TTL expire after this many seconds (a miss at once, reclaimed lazily and by a bounded sweep); off = never"),
        new("namespace-quota", "PREFIX=SIZE", "none", "keys starting with PREFIX may hold at most SIZE bytes of DRAM; over it PUT answers QUOTA_EXCEEDED; repeat the flag or join with commas (YAML: a list)"),
        new("frame-timeout", "SEC", "30", "a started frame must arrive whole within this"),
        new("max-batch", "N", "8192", "keys per request"),
        new("max-connections", "N", "4096", "open connections"),
        new("max-buffered-meta", "SIZE", "256MiB", "request metadata above 64 KiB being received by all connections at once (one address: a quarter); more waits"),
        new("max-connections-per-address", "N", "1024", "open connections from one client address, so one host cannot take every slot"),
        new("handshake-timeout", "SEC", "10", "a new connection must finish HELLO (and AUTH) within this"),
        new("idle-timeout", "SEC", "0", "cut connections with no request for this long; 0 = never (pooled clients idle between bursts)"),
        new("max-leases-per-connection", "N", "65536", "shared-memory leases one connection holds at once; over it the connection is cut (LIMIT_EXCEEDED)"),
        new("max-leases", "N", "1048576", "shared-memory leases all connections hold at once; over it LEASE answers OUT_OF_MEMORY (read over TCP)"),
        new("max-reserved-per-connection", "SIZE", "memory/4", "bytes one connection may hold reserved through shared-memory ALLOC, so it cannot evict the whole arena"),
        new("withhold-features", "HEX", "0", "HELLO feature bits not granted, as a node that predates them (e.g. 0x20: chained COMMITs); for client compatibility tests"),
        new("log-level", "LEVEL", "information", "trace | debug | information | warning | error"),
        new("access-log", "PATH|-", "none", "one line per request (time, client, op, keys, status, microseconds); - for stdout"),
        new("access-stats", "N", "100000", "GET/LEASE accesses kept for /v1/access-stats, kvasir stats export and the dashboard heatmap (152 bytes each, allocated at start); 0 = off"),
        new("shm", "on|off", "on", "arena in a /dev/shm file (0600) so same-host clients copy through shared memory; on = when it fits (Linux)"),
        new("admin-port", "N|off", "port+1", "admin HTTP (health, ready, status, metrics, dashboard); 0 with --port 0; off disables"),
        new("admin-host", "ADDR", "127.0.0.1", "address the admin port binds"),
        new("disk", "PATH", "none", "local-disk tier: every value also on disk, recovered on restart"),
        new("disk-capacity", "SIZE", "10GiB", "bytes the disk tier may hold; the oldest segment is dropped beyond"),
        new("disk-sync", "none|batch|always", "none", "when an acknowledged PUT is on stable storage: none = survives kill -9, not power loss; batch = one fsync per write batch; always = fsync per value"),
        new("promote-after", "N", "2", "a value read N times from a lower tier moves back into DRAM"),
        new("hot-fraction", "F", "0.2", "share of DRAM that promoted values may take"),
        new("shared-fs", "PATH", "none", "shared cold tier: a directory many nodes mount"),
        new("redis", "URL", "none", "join a cluster: register in this Redis (redis://[[user]:password@]host:port[/db], rediss://… for TLS, redis+sentinel://host:port,…/master; docs/cluster.md)"),
        new("redis-ca", "PATH", "none", "PEM file of the CA that signs the rediss:// server's certificate (instead of the system's roots)"),
        new("cluster", "NAME", "default", "cluster name in Redis"),
        new("advertise", "HOST:PORT", "host:port", "address clients use to reach the node (needed with --host 0.0.0.0)"),
        new("node-id", "ID", "advertised address", "placement identity; keep it stable across restarts"),
        new("heartbeat-ttl", "SEC", "5", "a node silent this long is dead to clients"),
        new("kind", "node|embedded", "node", "label shown by kvasir status"),
    ];

    public static readonly IReadOnlyCollection<string> Names = All.Select(o => o.Name).ToHashSet();

    /// <summary>Options that may be given more than once (values joined with commas).</summary>
    public static readonly IReadOnlyCollection<string> Repeatable = ["namespace-quota"];

    public static ServeOption? Find(string name) => All.FirstOrDefault(o => o.Name == name);

    public static string Help()
    {
        var lines = new List<string>
        {
            "kvasir serve [--config FILE] [options]   run a cache node (embedded defaults: 127.0.0.1:7380, 1 GiB, no auth)",
            "",
            "  Each option can also come from the YAML file's node: section (--config FILE or KVASIR_CONFIG) or",
            "  from its environment variable; flags win over the environment, which wins over the file.",
            "  kvasir config [--config FILE] [options] prints the effective configuration and where each value came from.",
            "",
        };
        int width = All.Max(o => o.Flag.Length + 1 + o.Arg.Length);
        int help = All.Max(o => o.Help.Length);
        foreach (var o in All)
            lines.Add($"  {(o.Flag + " " + o.Arg).PadRight(width)}  {o.Help.PadRight(help)}  default {o.Default}  (${o.EnvVar})");
        return string.Join('\n', lines);
    }
}
