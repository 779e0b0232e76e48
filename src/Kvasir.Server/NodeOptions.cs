using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server;

/// <summary>Options of a cache node. Every default is what <c>kvasir serve</c> uses with no flags.</summary>
public sealed class NodeOptions
{
    /// <summary>Address the data port binds. Default 127.0.0.1 (loopback only); 0.0.0.0 exposes the node to the network, so set an auth key.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Data port. Default 7380; 0 picks a free port (see <see cref="CacheNode.Port"/>).</summary>
    public int Port { get; init; } = 7380;

    /// <summary>
    /// 32-byte HMAC key (64 hex characters on the command line). Default none: any client that can
    /// reach the port may read and write everything.
    /// </summary>
    public byte[]? AuthKey { get; init; }

    /// <summary>
    /// PEM certificate (optionally followed by its chain) the data port presents; with <see cref="TlsKeyFile"/> every
    /// TCP connection speaks TLS. Default none: plaintext, fine on a trusted network, readable and forgeable on an
    /// untrusted one. TLS composes with <see cref="AuthKey"/>; the shared-memory data path stays local and is unaffected.
    /// </summary>
    public string? TlsCertFile { get; init; }

    /// <summary>PEM private key of <see cref="TlsCertFile"/>. Default none.</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>
    /// PEM CA certificate(s): with it, every client must present a certificate that chains to them. Default none
    /// (any client that completes the handshake may speak; use <see cref="AuthKey"/> or this to restrict who).
    /// </summary>
    public string? TlsClientCaFile { get; init; }

    /// <summary>TLS is on for the data port.</summary>
    public bool HasTls => TlsCertFile is not null;

    /// <summary>Arena, allocator and eviction settings. Default: 1 GiB, 64 MiB values, chain-aware LFU eviction.</summary>
    public StoreOptions Store { get; init; } = new();

    /// <summary>Most keys in one request. Default 8192. Larger batches are refused with BatchTooLarge and the connection closed.</summary>
    public int MaxBatchKeys { get; init; } = ProtocolLimits.DefaultMaxBatchKeys;

    /// <summary>Largest metadata section of a request. Default 8 MiB. Each connection may hold one such buffer while a request is parsed.</summary>
    public int MaxMetaBytes { get; init; } = ProtocolLimits.DefaultMaxMetaBytes;

    /// <summary>
    /// Request metadata all connections together may be receiving at once, counting requests whose metadata exceeds
    /// 64 KiB. Default 256 MiB; one client address may hold a quarter of it. A request that finds no room waits (its
    /// frame timeout running): slow senders of many large batches cannot make the node buffer without bound. Must be at
    /// least 4 × <see cref="MaxMetaBytes"/>.
    /// </summary>
    public long MaxBufferedMetaBytes { get; init; } = 256L << 20;

    /// <summary>
    /// A frame whose header has arrived must arrive whole within this time. Default 30 s. Too short
    /// cuts off slow clients sending large batches; too long lets a stalled client hold arena space
    /// reserved for its PUT that long.
    /// </summary>
    public TimeSpan FrameTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Replies queued per connection before the node stops reading that connection's requests. Default 64. Each queued GET reply holds leases on its values.</summary>
    public int MaxQueuedReplies { get; init; } = 64;

    /// <summary>Open connections accepted at once. Default 4096; connections beyond it are closed at accept.</summary>
    public int MaxConnections { get; init; } = 4096;

    /// <summary>
    /// Open connections accepted at once from one client address. Default 1024 (a quarter of <see cref="MaxConnections"/>),
    /// so one host cannot take every slot; connections beyond it are closed at accept. A host running many engine
    /// processes behind one address needs processes × connections per node below it.
    /// </summary>
    public int MaxConnectionsPerAddress { get; init; } = 1024;

    /// <summary>
    /// A new connection must finish HELLO (and AUTH, with an auth key) within this time, or it is cut. Default 10 s:
    /// a connection that never speaks holds no slot longer.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Cut a connection that sent no request for this long. Default null: never (clients keep pooled connections open
    /// between bursts). Set it where clients are many and untrusted; a client then reconnects after an idle spell.
    /// </summary>
    public TimeSpan? IdleTimeout { get; init; }

    /// <summary>
    /// Shared-memory leases one connection may hold at once. Default 65,536 (a few MB of node memory; a batch is at most
    /// <see cref="MaxBatchKeys"/> keys). A LEASE that would go over it is answered LIMIT_EXCEEDED and the connection is
    /// closed, which releases everything it held: a client that never RELEASEs cannot grow the node without bound.
    /// </summary>
    public int MaxLeasesPerConnection { get; init; } = 65_536;

    /// <summary>
    /// Shared-memory leases held by all connections together. Default 1,048,576 (about 200 MB of bookkeeping at most).
    /// Past it a LEASE answers OUT_OF_MEMORY for the key (read it over TCP) until leases are released or expire.
    /// </summary>
    public int MaxLeases { get; init; } = 1 << 20;

    /// <summary>
    /// Bytes one connection may hold reserved through shared-memory ALLOC at once. Default null: a quarter of the arena
    /// (at least the largest value). Past it ALLOC answers OUT_OF_MEMORY for the key, so one client's reservations can
    /// evict at most this much, never the whole arena.
    /// </summary>
    public long? MaxReservedBytesPerConnection { get; init; }

    /// <summary>
    /// HELLO feature bits this node does not grant (docs/protocol.md § Versioning and features), as a node that predates
    /// them would not. Default 0: every feature it knows. For testing clients against an older node, or to keep clients
    /// off a feature while a defect in it is fixed; a client then takes its documented fallback (a chained shared-memory
    /// put without 0x20 goes over TCP). Withholding 0x8 (ARENA_PROOF) puts back the node's zeroing and checksumming passes
    /// on every shared-memory write.
    /// </summary>
    public ulong WithheldFeatures { get; init; }

    /// <summary>The per-connection reservation share in effect (<see cref="MaxReservedBytesPerConnection"/> or its default).</summary>
    internal long ReservedBytesPerConnection => MaxReservedBytesPerConnection ?? Math.Max(Store.Capacity / 4, Store.MaxValueBytes);

    /// <summary>On stop, how long in-flight requests may take to finish before their connections are cut. Default 10 s.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Name the node gives in HELLO and STATS. Default "host:port".</summary>
    public string? NodeId { get; init; }

    /// <summary>Local-disk and shared-filesystem tiers below DRAM (docs/tiers.md). Default none: DRAM only.</summary>
    public Kvasir.Storage.Tiers.TierOptions? Tiers { get; init; }

    /// <summary>
    /// Admin HTTP port (health, ready, status, Prometheus metrics, dashboard); 0 picks a free one.
    /// Default null: no admin endpoint (the library default; <c>kvasir serve</c> turns it on at the data port + 1).
    /// </summary>
    public int? AdminPort { get; init; }

    /// <summary>Address the admin port binds. Default 127.0.0.1: metrics and status stay on the host unless opened on purpose.</summary>
    public string AdminHost { get; init; } = "127.0.0.1";

    /// <summary>Access log: a file to append one line per request to, or "-" for stdout. Default none (it costs a formatted line per request).</summary>
    public string? AccessLog { get; init; }

    /// <summary>
    /// Entries in the access-statistics ring: the last N GET/LEASE keys with time, hit or miss, tier and size, served
    /// at admin <c>GET /v1/access-stats</c> and drawn by the dashboard's heatmap. Default 100,000 (about 15 MiB,
    /// allocated at start: 152 bytes per entry); 0 turns recording off. Larger keeps a longer history at that cost
    /// per entry, and an export of it is proportionally larger (about 100 bytes of JSON per entry).
    /// </summary>
    public int AccessStatsCapacity { get; init; } = 100_000;

    /// <summary>
    /// Put the arena in a /dev/shm file (mode 0600, removed on clean stop) so same-host clients can use
    /// the shared-memory transport. Default false in the library; <c>kvasir serve</c> turns it on on
    /// Linux when the arena fits in /dev/shm. A node killed with SIGKILL leaves its file behind, removed by
    /// the first of its clients to find it gone or the next node to start on the host (<see cref="Kvasir.Net.ArenaFiles"/>;
    /// docs/operations.md § Shared-memory arena files). Requires <see cref="StoreOptions.LeaseTimeout"/>
    /// of at least <see cref="MinShmLeaseTimeout"/>.
    /// </summary>
    public bool SharedMemory { get; init; }

    /// <summary>
    /// The shortest lease timeout a node with a shared-memory arena accepts: 1 s. Clients copy through the
    /// arena without asking when their copy ends within 1 s of their LEASE or ALLOC (docs/protocol.md §
    /// Ownership and timeouts); a node that expired leases or reservations sooner could hand their space
    /// to another key under such a copy.
    /// </summary>
    public static readonly TimeSpan MinShmLeaseTimeout = TimeSpan.FromSeconds(1);

    /// <summary>The arena goes to /dev/shm: <see cref="SharedMemory"/> on Linux.</summary>
    [System.Runtime.Versioning.SupportedOSPlatformGuard("linux")]
    internal bool HasSharedMemoryArena => SharedMemory && OperatingSystem.IsLinux();

    /// <summary>Cluster membership through Redis. Default none: a standalone node.</summary>
    public ClusterJoinOptions? Cluster { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port {Port} is out of range 0..65535");
        if (AuthKey is not null && AuthKey.Length != AuthHandshake.KeyBytes) throw new ArgumentException("auth key must be 32 bytes (64 hex characters)");
        if ((TlsCertFile is null) != (TlsKeyFile is null)) throw new ArgumentException("TLS needs both a certificate and a key file (--tls-cert and --tls-key)");
        if (TlsClientCaFile is not null && TlsCertFile is null) throw new ArgumentException("a TLS client CA (--tls-client-ca) needs --tls-cert and --tls-key");
        if (AdminPort is < 0 or > 65535) throw new ArgumentException($"admin port {AdminPort} is out of range 0..65535");
        if (AdminPort is not null && !System.Net.IPAddress.TryParse(AdminHost, out _)) throw new ArgumentException($"admin host '{AdminHost}' is not an IP address");
        if (AccessStatsCapacity is < 0 or > 10_000_000) throw new ArgumentException($"access stats capacity {AccessStatsCapacity} is out of range 0..10000000");
        if (MaxBatchKeys < 1) throw new ArgumentException("max batch keys must be at least 1");
        if (MaxMetaBytes < 1024) throw new ArgumentException("max metadata bytes must be at least 1024");
        if (FrameTimeout <= TimeSpan.Zero) throw new ArgumentException("frame timeout must be positive");
        if (MaxQueuedReplies < 1) throw new ArgumentException("max queued replies must be at least 1");
        if (MaxBufferedMetaBytes < 4L * MaxMetaBytes)
            throw new ArgumentException($"max buffered metadata ({MaxBufferedMetaBytes} bytes) must be at least 4 x the largest metadata section ({MaxMetaBytes}): one address may use a quarter");
        if (MaxConnections < 1) throw new ArgumentException("max connections must be at least 1");
        if (MaxConnectionsPerAddress < 1) throw new ArgumentException("max connections per address must be at least 1");
        if (HandshakeTimeout <= TimeSpan.Zero) throw new ArgumentException("handshake timeout must be positive");
        if (IdleTimeout is { } idle && idle <= TimeSpan.Zero) throw new ArgumentException("idle timeout must be positive (leave it unset for none)");
        if (MaxLeasesPerConnection < 1) throw new ArgumentException("max leases per connection must be at least 1");
        if (MaxLeases < 1) throw new ArgumentException("max leases must be at least 1");
        if (MaxReservedBytesPerConnection is < 1) throw new ArgumentException("max reserved bytes per connection must be at least 1");
        if (Store.MaxValueBytes > ProtocolLimits.HardMaxValueBytes) throw new ArgumentException($"max value size may not exceed {ProtocolLimits.HardMaxValueBytes} bytes");
        if (Store.MaxKeyBytes > ProtocolLimits.MaxKeyBytes) throw new ArgumentException($"max key bytes may not exceed {ProtocolLimits.MaxKeyBytes}");
        if (NodeId is not null && System.Text.Encoding.UTF8.GetByteCount(NodeId) > ProtocolLimits.MaxNameBytes)
            throw new ArgumentException($"node id may not exceed {ProtocolLimits.MaxNameBytes} bytes");
        if (NodeId is not null && !Kvasir.Cluster.NodeRecord.IsValidId(NodeId))
            throw new ArgumentException($"node id '{NodeId}' must be 1 to 255 printable ASCII characters without spaces");
        try { Cluster?.Validate(); }
        catch (FormatException ex) { throw new ArgumentException(ex.Message, ex); }
        Store.Validate();
        if (HasSharedMemoryArena && Store.LeaseTimeout < MinShmLeaseTimeout)
            throw new ArgumentException($"LeaseTimeout {Store.LeaseTimeout.TotalMilliseconds:0.###} ms is below {MinShmLeaseTimeout.TotalSeconds:0} s: "
                + "clients of the shared-memory arena rely on holding a lease or reservation for at least 1 s");
        Tiers?.Validate();
    }
}
