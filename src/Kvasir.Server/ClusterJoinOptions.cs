namespace Kvasir.Server;

/// <summary>How a node joins a cluster: it registers in Redis and renews that registration by heartbeat.</summary>
public sealed class ClusterJoinOptions
{
    /// <summary>
    /// The registry. Required. <c>redis://[[user]:password@]host:port[/db]</c>, <c>rediss://…[?ca=PATH]</c>
    /// (TLS) or <c>redis+sentinel://host:port,host:port/master[/db]</c> (docs/cluster.md).
    /// </summary>
    public required string RedisUrl { get; init; }

    /// <summary>PEM file of the CA that signs the rediss:// server's certificate (instead of the system's roots). Default none.</summary>
    public string? RedisCaFile { get; init; }

    /// <summary>The parsed registry URL with its CA.</summary>
    public Kvasir.Cluster.RedisUrl ParsedRedisUrl() => Kvasir.Cluster.RedisUrl.Parse(RedisUrl, RedisCaFile);

    /// <summary>Cluster name; nodes and clients of one name form one cluster. Default "default". 1–64 of [A-Za-z0-9_.-].</summary>
    public string Name { get; init; } = "default";

    /// <summary>
    /// Data address clients should connect to, "host:port". Default: the bound host and port, which
    /// is wrong when binding 0.0.0.0 or behind NAT — set it then. It is also the node's id unless
    /// <see cref="NodeOptions.NodeId"/> is set, and ids decide placement: keep it stable across restarts.
    /// </summary>
    public string? Advertise { get; init; }

    /// <summary>
    /// A node whose heartbeat is this old is dead to clients. Default 5 s; heartbeats go every TTL/4.
    /// Shorter notices a crash sooner but costs more Redis calls and risks flapping under load.
    /// </summary>
    public TimeSpan HeartbeatTtl { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Time to reach Redis for one call. Default 2 s.</summary>
    public TimeSpan RedisTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>"node" or "embedded" (a node inside a client process), as shown by <c>kvasir status</c>.</summary>
    public string Kind { get; init; } = "node";

    internal void Validate()
    {
        try { ParsedRedisUrl(); }
        catch (FormatException ex) { throw new ArgumentException(ex.Message, ex); }
        Kvasir.Cluster.RedisClusterRegistry.ValidateClusterName(Name);
        if (Advertise is not null && !Kvasir.Cluster.Endpoint.TryParse(Advertise, out _))
            throw new ArgumentException($"advertise address '{Advertise}' is not HOST:PORT");
        if (HeartbeatTtl < TimeSpan.FromMilliseconds(400)) throw new ArgumentException("heartbeat TTL must be at least 0.4 s");
    }
}
