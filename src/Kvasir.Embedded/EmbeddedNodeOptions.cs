using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Embedded;

/// <summary>A node run inside a cluster client's process (<see cref="EmbeddedKvStore.ConnectAsync"/>).</summary>
public sealed class EmbeddedNodeOptions
{
    /// <summary>Arena capacity in bytes: the DRAM this process lends the cluster. Required; at least 1 MiB.</summary>
    public required long Capacity { get; init; }

    /// <summary>Address other clients reach this node on, "host:port" with an IP address; port 0 picks a free one. Default "127.0.0.1:0" (this host only).</summary>
    public string DataPlaneAddress { get; init; } = "127.0.0.1:0";

    /// <summary>The node's id in the cluster (its placement identity). Default: its data address.</summary>
    public string? ClientId { get; init; }

    /// <summary>Heartbeat TTL of its registration. Default 5 s. Shorter notices a dead process sooner and costs more Redis writes.</summary>
    public TimeSpan HeartbeatTtl { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Throws <see cref="KvasirException"/> naming the first bad option.</summary>
    internal void Validate()
    {
        if (Capacity < 1 << 20) throw new KvasirException($"embedded node capacity must be at least 1 MiB (got {Capacity} bytes)");
        if (!Kvasir.Cluster.Endpoint.TryParse(DataPlaneAddress, out _, allowPortZero: true))
            throw new KvasirException($"data plane address '{DataPlaneAddress}' is not HOST:PORT");
    }

    /// <summary>The node's options: it joins the store's registry (if any) as kind "embedded" and shares its auth key.</summary>
    internal NodeOptions ToNodeOptions(KvStoreOptions store)
    {
        Kvasir.Cluster.Endpoint.TryParse(DataPlaneAddress, out var endpoint, allowPortZero: true);
        var (host, port) = endpoint;
        if (!System.Net.IPAddress.TryParse(host, out _)) throw new KvasirException($"data plane host '{host}' must be an IP address");
        var options = new NodeOptions
        {
            Host = host,
            Port = port,
            NodeId = ClientId,
            AuthKey = store.AuthKey is null ? null : Kvasir.Protocol.AuthHandshake.ParseKey(store.AuthKey),
            Store = new StoreOptions { Capacity = Capacity, MaxValueBytes = Math.Min(Kvasir.Protocol.ProtocolLimits.DefaultMaxValueBytes, Capacity) },
            Cluster = store.EffectiveRedisUrl is { } url
                ? new ClusterJoinOptions { RedisUrl = url, RedisCaFile = store.RedisCaFile, Name = store.Cluster, Kind = "embedded", HeartbeatTtl = HeartbeatTtl }
                : null,
        };
        try { options.Validate(); }
        catch (ArgumentException ex) { throw new KvasirException($"embedded node: {ex.Message}", ex); }
        return options;
    }
}
