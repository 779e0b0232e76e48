namespace Kvasir.Cluster;

/// <summary>
/// Where nodes announce themselves and clients find them: the one seam between Kvasir and its
/// coordination store (Redis, through <see cref="RedisClusterRegistry"/>). Every call may throw
/// <see cref="ClusterRegistryException"/> when the store cannot be reached; callers degrade, they
/// do not crash.
/// </summary>
public interface IClusterRegistry : IAsyncDisposable
{
    string ClusterName { get; }

    /// <summary>Whether the registry's connection is up right now.</summary>
    bool IsConnected { get; }

    /// <summary>
    /// Registers or refreshes <paramref name="record"/> as live for <paramref name="ttl"/> (measured by
    /// the registry's clock, so hosts' clocks need not agree). Also moves members whose time ran out
    /// to the down list. Returns true when membership changed (this node joined, or others expired).
    /// A node's first heartbeat (<paramref name="renewal"/> false) takes its id over even while another record holds it
    /// live: the later registration keeps an id, in the order the registry receives them, so a node restarted under its
    /// id takes over at once whatever the hosts' clocks say. <see cref="NodeRegistrar"/> passes true once it has registered.
    /// </summary>
    /// <exception cref="NodeIdConflictException">
    /// A renewal found the id live with another node's record, one registered after this node (two live nodes configured
    /// with one id): nothing changed.
    /// </exception>
    Task<bool> HeartbeatAsync(NodeRecord record, TimeSpan ttl, bool renewal = false);

    /// <summary>
    /// Removes a node at once (clean shutdown). With <paramref name="recordJson"/> (the leaving node's record as its
    /// heartbeat stored it), only while the id's stored record is still that one: a node that has taken the id over since
    /// keeps its registration.
    /// </summary>
    Task UnregisterAsync(string nodeId, string? recordJson = null);

    /// <summary>The live members, and the membership epoch they belong to.</summary>
    Task<ClusterSnapshot> ReadAsync();

    /// <summary>Cheap change check: the epoch and the number of live members.</summary>
    Task<(long Epoch, int Live)> PollAsync();

    /// <summary>Live members and those seen down within the last hour, for operators.</summary>
    Task<IReadOnlyList<MemberStatus>> ListAllAsync();

    /// <summary>Calls <paramref name="onChange"/> (on a thread-pool thread) whenever a node joins or leaves.</summary>
    Task SubscribeAsync(Action onChange);

    /// <summary>The cluster-wide settings (docs/cluster.md § Cluster settings); none for a registry that keeps no settings.</summary>
    /// <exception cref="ClusterRegistryException">The registry cannot be read.</exception>
    /// <exception cref="FormatException">A stored setting has a value this build cannot use.</exception>
    Task<ClusterSettings> ReadSettingsAsync() => Task.FromResult(ClusterSettings.None);

    /// <summary>Stores one cluster-wide setting (checked with <see cref="ClusterSettings.Validate"/>); an empty value removes it.</summary>
    /// <exception cref="ClusterRegistryException">The registry cannot be written, or keeps no settings.</exception>
    Task WriteSettingAsync(string name, string value) => throw new ClusterRegistryException($"registry {GetType().Name} keeps no cluster settings");
}

/// <summary>Live members at one membership epoch, sorted by id.</summary>
public sealed record ClusterSnapshot(long Epoch, IReadOnlyList<NodeRecord> Nodes);

/// <summary>A member as operators see it: live (heartbeat current) or down since <see cref="SinceMs"/>.</summary>
public sealed record MemberStatus(NodeRecord Record, bool Live, long SinceMs);

public class ClusterRegistryException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A heartbeat refused because another live node, registered later, holds the same id: a misconfiguration (give each
/// node its own <c>--node-id</c>). The registration is left to the other node.
/// </summary>
public sealed class NodeIdConflictException(NodeRecord mine, NodeRecord? theirs)
    : ClusterRegistryException($"node id '{mine.Id}' is registered by another live node at {theirs?.Address ?? "an unreadable address"} " +
        $"(registered later); this node at {mine.Address} is not registered while that one lives: give each node its own --node-id")
{
    /// <summary>The record that holds the id; null when it could not be read.</summary>
    public NodeRecord? Holder { get; } = theirs;
}
