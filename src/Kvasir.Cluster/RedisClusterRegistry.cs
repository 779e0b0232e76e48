using System.Text.RegularExpressions;
using StackExchange.Redis;

namespace Kvasir.Cluster;

/// <summary>
/// <see cref="IClusterRegistry"/> on a real redis-server (directly, over TLS, or the master that
/// sentinels name) through StackExchange.Redis 3. Layout
/// (docs/cluster.md), all keys of one cluster share the hash tag {NAME} so they live on one shard:
/// <c>kvasir:{NAME}:members</c> zset id → expiry (ms, Redis clock), <c>kvasir:{NAME}:records</c>
/// hash id → record JSON, <c>kvasir:{NAME}:down</c> zset id → when seen expired,
/// <c>kvasir:{NAME}:epoch</c> counter bumped on every change, channel <c>kvasir:{NAME}:events</c>.
/// Every multi-step change runs as one Lua script, so it is atomic and uses the server's clock; the scripts are
/// <see cref="RegistryScripts"/>, the files the Python client runs too.
/// </summary>
public sealed partial class RedisClusterRegistry : IClusterRegistry
{
    private volatile ConnectionMultiplexer _redis;
    private readonly RedisConnector _connector;
    private readonly TimeSpan _timeout;
    private readonly SemaphoreSlim _reconnecting = new(1, 1);
    private readonly List<Action> _subscribers = [];
    private readonly RedisKey _members, _records, _down, _epoch, _settings;
    private readonly RedisChannel _channel;
    private readonly string _channelName;

    private RedisClusterRegistry(ConnectionMultiplexer redis, RedisConnector connector, string cluster, TimeSpan timeout)
    {
        _redis = redis;
        _connector = connector;
        _timeout = timeout;
        ClusterName = cluster;
        _members = $"kvasir:{{{cluster}}}:members";
        _records = $"kvasir:{{{cluster}}}:records";
        _down = $"kvasir:{{{cluster}}}:down";
        _epoch = $"kvasir:{{{cluster}}}:epoch";
        _settings = $"kvasir:{{{cluster}}}:settings";
        _channelName = $"kvasir:{{{cluster}}}:events";
        _channel = RedisChannel.Literal(_channelName);
    }

    public string ClusterName { get; }

    public bool IsConnected => _redis.IsConnected;

    /// <summary>
    /// Opens the connection. Never fails because a Redis server is down: the connection keeps
    /// retrying in the background and calls throw <see cref="ClusterRegistryException"/> until it
    /// is up. With sentinels (redis+sentinel://) one of them must answer here, naming the master;
    /// otherwise this throws <see cref="ClusterRegistryException"/>.
    /// </summary>
    public static async Task<RedisClusterRegistry> ConnectAsync(RedisUrl url, string cluster, TimeSpan timeout)
    {
        ValidateClusterName(cluster);
        var connector = new RedisConnector(url);
        var redis = await connector.ConnectAsync(timeout).ConfigureAwait(false);
        return new RedisClusterRegistry(redis, connector, cluster, timeout);
    }

    /// <summary>Cluster names are 1..64 of [A-Za-z0-9_.-]: they become part of Redis key names.</summary>
    public static void ValidateClusterName(string cluster)
    {
        if (!ClusterNamePattern().IsMatch(cluster))
            throw new FormatException($"cluster name '{cluster}' must be 1 to 64 of A-Z a-z 0-9 _ . -");
    }

    [GeneratedRegex("^[A-Za-z0-9_.-]{1,64}$")]
    private static partial Regex ClusterNamePattern();

    public async Task<bool> HeartbeatAsync(NodeRecord record, TimeSpan ttl, bool renewal = false)
    {
        RedisValue[] args = [record.Id, record.ToJson(), (long)ttl.TotalMilliseconds, _channelName];
        if (renewal) args = [.. args, "1"];
        var result = await RunAsync(RegistryScripts.Heartbeat, [_members, _records, _down, _epoch], args).ConfigureAwait(false);
        if (result.Resp2Type == ResultType.BulkString)   // a renewal found the id live with the record of a node registered since
            throw new NodeIdConflictException(record, NodeRecord.TryParse((string?)result));
        return (long)result == 1;
    }

    public Task UnregisterAsync(string nodeId, string? recordJson = null)
        => RunAsync(RegistryScripts.Unregister, [_members, _records, _down, _epoch],
            recordJson is null ? [nodeId, _channelName] : [nodeId, _channelName, recordJson]);

    public async Task<ClusterSnapshot> ReadAsync()
    {
        var items = (RedisResult[])(await RunAsync(RegistryScripts.Read, [_members, _records, _epoch], []).ConfigureAwait(false))!;
        long epoch = long.TryParse((string?)items[0], out var e) ? e : 0;
        var nodes = new List<NodeRecord>();
        for (int i = 1; i + 1 < items.Length; i += 2)
        {
            var record = NodeRecord.TryParse((string?)items[i + 1]);
            if (record is not null && record.Id == (string?)items[i]) nodes.Add(record);
        }
        nodes.Sort((a, b) => string.CompareOrdinal(a.Id, b.Id));
        return new ClusterSnapshot(epoch, nodes);
    }

    public async Task<(long Epoch, int Live)> PollAsync()
    {
        var items = (RedisResult[])(await RunAsync(RegistryScripts.Poll, [_members, _epoch], []).ConfigureAwait(false))!;
        return ((long)items[0], (int)(long)items[1]);
    }

    /// <summary>
    /// The names of the clusters that have node records in this Redis (a SCAN of <c>kvasir:{*}:records</c> on the
    /// primary), at most <paramref name="limit"/>, sorted: what to suggest when a cluster name finds no node.
    /// </summary>
    public async Task<IReadOnlyList<string>> ListClusterNamesAsync(int limit = 50)
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var server in _redis.GetServers().Where(s => s.IsConnected && !s.IsReplica))
            {
                await foreach (var key in server.KeysAsync(_redis.GetDatabase().Database, "kvasir:{*}:records", pageSize: 500).ConfigureAwait(false))
                {
                    string k = key.ToString();
                    int open = k.IndexOf('{', StringComparison.Ordinal), close = k.LastIndexOf('}');
                    if (open >= 0 && close > open) names.Add(k[(open + 1)..close]);
                    if (names.Count >= limit) return [.. names];
                }
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            throw new ClusterRegistryException(_connector.Describe(ex), ex);
        }
        return [.. names];
    }

    public async Task<IReadOnlyList<MemberStatus>> ListAllAsync()
    {
        var items = (RedisResult[])(await RunAsync(RegistryScripts.List, [_members, _records, _down], []).ConfigureAwait(false))!;
        long now = (long)items[0];
        var list = new List<MemberStatus>();
        for (int i = 1; i + 3 < items.Length; i += 4)
        {
            var record = NodeRecord.TryParse((string?)items[i + 1]);
            if (record is null) continue;
            double score = double.Parse((string)items[i + 2]!, System.Globalization.CultureInfo.InvariantCulture);
            bool live = (long)items[i + 3] == 1 && score >= now;
            // A live entry's score is its expiry; a down entry's is when it was found expired.
            list.Add(new MemberStatus(record, live, live ? record.StartedMs : (long)score));
        }
        return list.OrderBy(m => m.Record.Id, StringComparer.Ordinal).ToList();
    }

    public async Task SubscribeAsync(Action onChange)
    {
        lock (_subscribers) _subscribers.Add(onChange);
        try
        {
            await _redis.GetSubscriber().SubscribeAsync(_channel, (_, _) => onChange()).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            throw new ClusterRegistryException($"cannot subscribe to {_channelName}: {_connector.Describe(ex)}", ex);
        }
    }

    private async Task<RedisResult> RunAsync(string script, RedisKey[] keys, RedisValue[] args)
    {
        for (int attempt = 0; ; attempt++)
        {
            var redis = _redis;
            try
            {
                return await redis.GetDatabase().ScriptEvaluateAsync(script, keys, args).ConfigureAwait(false);
            }
            catch (RedisServerException ex) when (attempt == 0 && IsDemoted(ex))
            {
                if (!await FollowMasterAsync(redis).ConfigureAwait(false)) throw new ClusterRegistryException(_connector.Describe(ex), ex);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                throw new ClusterRegistryException(_connector.Describe(ex), ex);
            }
        }
    }

    /// <summary>The server refused a write because it is a replica now: a failed-over master that came back before the connection followed the failover.</summary>
    private bool IsDemoted(RedisServerException ex)
        => _connector.FollowsSentinels && ex.Message.StartsWith("READONLY", StringComparison.Ordinal);

    /// <summary>
    /// Opens a fresh connection to the master the sentinels name now, moves the pub/sub handlers to it and closes the
    /// stale one. StackExchange.Redis follows a failover by the sentinels' +switch-master message; a master that comes
    /// back as a replica at its old address before that message arrives (or after it was missed while the connection
    /// was down) keeps the connection pointed at a replica, and every heartbeat fails READONLY until the registration
    /// expires. True when there is a new connection to retry on (once per stale connection; concurrent callers share it).
    /// </summary>
    private async Task<bool> FollowMasterAsync(ConnectionMultiplexer stale)
    {
        await _reconnecting.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!ReferenceEquals(_redis, stale)) return true;   // another caller already followed it
            ConnectionMultiplexer fresh;
            try { fresh = await _connector.ConnectAsync(_timeout).ConfigureAwait(false); }
            catch (ClusterRegistryException) { return false; }
            if (!fresh.IsConnected)
            {
                await fresh.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
                return false;
            }
            Action[] handlers;
            lock (_subscribers) handlers = [.. _subscribers];
            try
            {
                foreach (var onChange in handlers)
                    await fresh.GetSubscriber().SubscribeAsync(_channel, (_, _) => onChange()).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                await fresh.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
                return false;
            }
            _redis = fresh;
            _ = stale.CloseAsync(allowCommandsToComplete: false);
            return true;
        }
        finally
        {
            _reconnecting.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _reconnecting.WaitAsync().ConfigureAwait(false);
        await _redis.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
    }
}
