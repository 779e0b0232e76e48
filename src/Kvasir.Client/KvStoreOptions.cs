using Microsoft.Extensions.Logging;

namespace Kvasir.Client;

/// <summary>Options of a <see cref="KvStore"/> talking to a node over TCP.</summary>
public sealed class KvStoreOptions
{
    /// <summary>
    /// The node, as "host:port". Default 127.0.0.1:7380 (what <c>kvasir serve</c> listens on).
    /// Also accepted: a comma-separated list "a:p,b:p" (a static cluster, keys placed over the list)
    /// and a "redis://host:port" URL (same as setting <see cref="RedisUrl"/>).
    /// </summary>
    public string Server { get; init; } = "127.0.0.1:7380";

    /// <summary>
    /// A cluster registry, <c>redis://[[user]:password@]host:port[/db]</c>, <c>rediss://…[?ca=PATH]</c> (TLS)
    /// or <c>redis+sentinel://host:port,host:port/master[/db]</c> (docs/cluster.md). Default none. When set, the store
    /// discovers the cluster's live nodes there, follows joins and departures, and places each key
    /// on its nodes by rendezvous hashing (docs/cluster.md); <see cref="Server"/> is then ignored.
    /// </summary>
    public string? RedisUrl { get; init; }

    /// <summary>PEM file of the CA that signs a rediss:// registry's certificate (instead of the system's roots). Default none.</summary>
    public string? RedisCaFile { get; init; }

    /// <summary>Cluster name in the registry. Default "default".</summary>
    public string Cluster { get; init; } = "default";

    /// <summary>
    /// Copies of each value in a cluster (1 to 16). Puts go to the top R nodes of the key's ranking;
    /// gets and exists ask them (see <see cref="ReplicaVersions"/>). R=2 survives one node's death without misses; each
    /// replica costs a put's bandwidth and memory again. Overridable per put (<see cref="PutOptions.Replicas"/>).
    /// </summary>
    /// <remarks>
    /// Default 0: the cluster's setting (<c>kvasir cluster set replicas=N</c>, read from the registry when the store
    /// connects and again on every membership poll, so a running store follows a change; docs/cluster.md § Cluster
    /// settings), or 1 when it has none or the cluster is a static server list.
    /// </remarks>
    public int Replicas { get; init; }

    /// <summary>
    /// With <see cref="Replicas"/> ≥ 2 (default true): every put carries a version from this client's hybrid logical
    /// clock, and every get asks all of a key's replicas, keeps the newest copy and writes it back to replicas that had
    /// none or an older one (read repair), so an overwritten key never reads stale after a replica missed the
    /// overwrite (docs/cluster.md § Versions). Costs R reads per get (and TCP instead of shared memory for the versioned
    /// calls). False: gets ask replicas in rank order and take the first hit — enough for write-once keys (content
    /// addressed KV blocks, whose value never changes).
    /// </summary>
    public bool ReplicaVersions { get; init; } = true;

    /// <summary>
    /// In a cluster, place chained puts by their chain's root key (docs/protocol.md § Placement): all blocks of a
    /// chain live on the root's R nodes, so a batch of one request's blocks is one RPC per replica and chain lookups
    /// (<see cref="KvStore.ExistsChainAsync"/>) ask one node. Default false (each key on its own nodes: spreads load,
    /// but a 64-block batch over many nodes is dozens of RPCs). Every client of a cluster must agree, or readers look
    /// for blocks on other nodes than the writer used. Overridable per put (<see cref="PutOptions.ChainPlacement"/>).
    /// </summary>
    public bool ChainPlacement { get; init; }

    /// <summary>How often a cluster client checks the registry for membership changes. Default 1 s (changes are also pushed by pub/sub).</summary>
    public TimeSpan MembershipPoll { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How value bytes travel. Default <see cref="KvTransportKind.Auto"/>: shared memory when the node's
    /// address is this host's (loopback or one of its interfaces) and the node's arena can be mapped
    /// (SHM_INFO, then its token file read back and compared: same host, same user or permission),
    /// otherwise TCP, with the reason logged at Information through <see cref="LoggerFactory"/>.
    /// <see cref="KvTransportKind.Shm"/> insists: <see cref="KvStore.ConnectAsync(KvStoreOptions, CancellationToken)"/> throws
    /// <see cref="KvasirException"/> with the reason instead of falling back (in a cluster, a node
    /// that cannot use it is treated as unreachable). <see cref="KvTransportKind.Tcp"/> never tries.
    /// Over shared memory GET is LEASE + one copy out of the arena + RELEASE, PUT is ALLOC + one copy
    /// in + COMMIT; chained puts (<see cref="PutOptions.Chain"/>), EXISTS, REMOVE, PIN, UNPIN, STATS
    /// and PING still go over the socket. The risk: this process maps the node's whole arena
    /// read-write, so a bug that writes through a stray pointer here can corrupt other keys' values.
    /// </summary>
    public KvTransportKind Transport { get; init; } = KvTransportKind.Auto;

    /// <summary>Logs for cluster events (membership changes, unreachable nodes) and the transport chosen when it is not the one asked for. Default none.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>The node's auth key as 64 hex characters. Default none. With a key set the client also refuses a node that does not authenticate itself.</summary>
    public string? AuthKey { get; init; }

    /// <summary>
    /// TLS for TCP connections to the nodes (their <c>--tls-cert</c>). Default none: plaintext, and a node that
    /// requires TLS refuses the connection with a message saying so. With it set, a node that does not speak TLS
    /// is refused instead of being talked to in plaintext. The shared-memory transport still copies values through
    /// the local arena; its control messages ride the TLS connection.
    /// </summary>
    public KvTlsOptions? Tls { get; init; }

    /// <summary>Time to open a connection and finish HELLO/AUTH. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Time a request may wait for its reply, counted from when it is handed to a connection.
    /// Default 30 s. When it passes, the keys report <see cref="KvStatus.Timeout"/>; if the reply was
    /// already arriving into the caller's buffers the connection is cut first, so no byte lands in a
    /// buffer after the call has returned.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// TCP connections kept to the node, opened as they are needed. Default 4. Requests are pipelined on each; more
    /// connections spread large transfers over more cores, and let one large batch be striped (<see cref="StripeBytes"/>).
    /// </summary>
    public int ConnectionsPerNode { get; init; } = 4;

    /// <summary>
    /// Over TCP, a GET or PUT batch whose values (for a GET: whose destinations) total at least twice this many bytes is
    /// split into contiguous runs of its keys, about equal in bytes and no more runs than the total holds this size (a run
    /// is whole values, so uneven values make uneven runs), one request per connection
    /// that is free at the time (open with nothing outstanding, or not yet opened; up to <see cref="ConnectionsPerNode"/>),
    /// and the call returns when every run has: one request in flight then moves its bytes over several streams and
    /// cores, on both sides. A value is never split. A PUT that declares a chain is striped where the node links late
    /// parents (feature <c>LATE_PARENT</c>: each run continues the last key of the run before it), else it goes whole, in
    /// order. Not striped: a PUT that names a key twice (the last value wins), a GET into arrays allocated on arrival, and
    /// any batch while the connections are busy with other requests. Statuses are per key as before: a run whose connection
    /// fails reports its keys Unavailable, the other runs are unaffected. 0 turns striping off. Default 1 MiB on a host
    /// of 4 or more cores, else 0: with 2 cores the runs' sends and checksums only take turns on the one core the socket
    /// copies leave (1 MiB × 16 SET and GET at 1 in flight ran at 0.7× with striping on this project's 2-core machine,
    /// docs/benchmarks.md), as the client computes a VALUE_CRC batch's CRCs in parallel only on 4 or more cores.
    /// </summary>
    public long StripeBytes { get; init; } = Environment.ProcessorCount >= 4 ? 1L << 20 : 0;

    /// <summary>Name sent in HELLO, shown in the node's logs. Default "kvasir-dotnet".</summary>
    public string ClientName { get; init; } = "kvasir-dotnet";

    /// <summary>
    /// Ask the node for VALUE_CRC and CRC_TRAILER (docs/protocol.md) and send each PUT value's CRC-32C, computed here (on
    /// the writer's cores, as each value is sent: CRC_TRAILER) or given in <see cref="PutOptions.ValueCrc32C"/>: the node
    /// then stores it without checksumming on its receive path, and checks it before the value is first read or written
    /// to a lower tier. Default true; a node that does not grant it gets plain PUTs.
    /// </summary>
    public bool SendValueCrc { get; init; } = true;

    /// <summary>
    /// Check every GET hit against the CRC-32C its node sent with it (docs/protocol.md § Strict GET and CRC32C), so a byte
    /// corrupted on the wire, in a buffer on the way or in the shared-memory arena is never handed back as a value: the key
    /// reports <see cref="KvStatus.ChecksumMismatch"/> (a miss; its destination's contents are unspecified), the batch's
    /// other keys and the connection are unaffected, <see cref="KvStore.ChecksumMismatches"/> counts it and a Warning is
    /// logged through <see cref="LoggerFactory"/>; in a cluster the key is read from its next replica instead. Over TCP each piece is checksummed as it arrives (cache-hot, no second
    /// pass over the value); over shared memory each 256 KiB chunk right after its copy out of the arena. A node in this
    /// process (<see cref="KvTransportKind.InProcess"/>) is not checked.
    /// </summary>
    /// <remarks>
    /// Default false, by measurement (docs/benchmarks.md, "GET: verifying each value's CRC-32C in the client"): the
    /// CRC itself runs at ~57 GB/s over cache-hot data here (0.018 s/GB of client CPU), but over TCP the bytes the
    /// kernel has just copied into the destination are checksummed at nearer DRAM speed, and GET over TCP cost the
    /// client +0.00 to +0.05 s/GB (median of the shapes ≈ +0.035, ~15 % of its CPU per byte) — above the 0.02 s/GB
    /// budget for an always-on check. Turn it on where a wrong byte costs more than that CPU: a value that fails the
    /// check is recomputed instead of silently used.
    /// </remarks>
    public bool VerifyValueCrc { get; init; } = false;

    /// <summary>
    /// Over TCP, resume the caller of a PUT, GET, EXISTS, REMOVE, PIN or UNPIN on the connection's reader as soon as
    /// its reply is in, instead of through the thread pool. Default false. True saves a thread-pool hop (a thread's
    /// wake-up and its spinning) per request: for a loop that issues the next request as soon as one returns, as
    /// <c>kvasir bench</c> does, the client's CPU per byte of a 16 MiB SET fell by a quarter on 2 cores
    /// (docs/benchmarks.md). The risk: until the caller's code after the await returns or awaits something, that
    /// connection reads no further replies. Code that blocks there (a synchronous wait on another request,
    /// <c>.Result</c>, a long computation) stalls every request on the connection, up to <see cref="RequestTimeout"/>.
    /// Use it only where every continuation is non-blocking.
    /// </summary>
    public bool InlineCompletions { get; init; }

    /// <summary>True when the store routes over several nodes (a registry or a list).</summary>
    internal bool IsRouted => RedisUrl is not null || ServerList().Count > 1;

    /// <summary>The registry in effect: <see cref="RedisUrl"/>, else <see cref="Server"/> when it is a redis:// URL; null without one.</summary>
    public string? EffectiveRedisUrl => RedisUrl ?? (IsRegistryUrl(Server) ? Server.Trim() : null);

    private static bool IsRegistryUrl(string server)
        => server.Trim() is var s && (s.StartsWith("redis://", StringComparison.Ordinal) || s.StartsWith("rediss://", StringComparison.Ordinal)
            || s.StartsWith("redis+sentinel://", StringComparison.Ordinal));

    internal IReadOnlyList<string> ServerList()
        => IsRegistryUrl(Server) ? [] : Server.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>These options for one member of a cluster.</summary>
    internal KvStoreOptions ForNode(string address) => new()
    {
        Server = address,
        AuthKey = AuthKey,
        Tls = Tls,
        ConnectTimeout = ConnectTimeout,
        RequestTimeout = RequestTimeout,
        ConnectionsPerNode = ConnectionsPerNode,
        StripeBytes = StripeBytes,
        ClientName = ClientName,
        SendValueCrc = SendValueCrc,
        VerifyValueCrc = VerifyValueCrc,
        InlineCompletions = InlineCompletions,
        Transport = Transport,
        LoggerFactory = LoggerFactory,
    };

    internal (string Host, int Port) ParseServer()
    {
        var s = Server.Trim();
        int colon = s.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(s[(colon + 1)..], out int port) || port is < 1 or > 65535)
            throw new KvasirException($"server address '{Server}' is not HOST:PORT");
        var host = s[..colon].Trim('[', ']');
        return (host, port);
    }

    /// <summary>
    /// Throws <see cref="KvasirException"/> naming the first bad option; the connect methods call it first.
    /// With <paramref name="hasMember"/> (a cluster with a node in this process) the server list may be empty.
    /// </summary>
    public void Validate(bool hasMember = false)
    {
        if (ConnectionsPerNode < 1) throw new KvasirException("ConnectionsPerNode must be at least 1");
        if (StripeBytes < 0) throw new KvasirException($"StripeBytes must be 0 (no striping) or a size in bytes (got {StripeBytes})");
        if (ConnectTimeout <= TimeSpan.Zero || RequestTimeout <= TimeSpan.Zero) throw new KvasirException("timeouts must be positive");
        if (Replicas is < 0 or > 16) throw new KvasirException($"replicas must be 1 to 16, or 0 for the cluster's setting (got {Replicas})");
        if (MembershipPoll <= TimeSpan.Zero) throw new KvasirException("membership poll interval must be positive");
        if (Transport is not (KvTransportKind.Auto or KvTransportKind.Tcp or KvTransportKind.Shm))
            throw new KvasirException($"transport {Transport} cannot be chosen for a connection (Auto, Tcp or Shm; a node in this process: KvStore.Open, or Kvasir.Embedded's EmbeddedKvStore)");
        if (EffectiveRedisUrl is { } url)
        {
            try { Kvasir.Cluster.RedisUrl.Parse(url, RedisCaFile); Kvasir.Cluster.RedisClusterRegistry.ValidateClusterName(Cluster); }
            catch (FormatException ex) { throw new KvasirException(ex.Message, ex); }
        }
        else if (ServerList() is { Count: > 1 } list)
        {
            foreach (var a in list)
                if (!Kvasir.Cluster.Endpoint.TryParse(a, out _)) throw new KvasirException($"server address '{a}' is not HOST:PORT");
        }
        else if (!hasMember || ServerList().Count > 0) ParseServer();
    }
}
