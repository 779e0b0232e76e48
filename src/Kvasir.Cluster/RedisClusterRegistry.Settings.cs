using StackExchange.Redis;

namespace Kvasir.Cluster;

/// <summary>Cluster-wide settings: the hash <c>kvasir:{NAME}:settings</c>, name → value (docs/cluster.md § Cluster settings).</summary>
public sealed partial class RedisClusterRegistry
{
    public async Task<ClusterSettings> ReadSettingsAsync()
    {
        HashEntry[] entries;
        try
        {
            entries = await _redis.GetDatabase().HashGetAllAsync(_settings, CommandFlags.DemandMaster).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            throw new ClusterRegistryException($"cannot read the settings of cluster '{ClusterName}': {_connector.Describe(ex)}", ex);
        }
        return ClusterSettings.From(entries.ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal));
    }

    public async Task WriteSettingAsync(string name, string value)
    {
        if (value.Length > 0) ClusterSettings.Validate(name, value);
        try
        {
            var db = _redis.GetDatabase();
            if (value.Length == 0) await db.HashDeleteAsync(_settings, name, CommandFlags.DemandMaster).ConfigureAwait(false);
            else await db.HashSetAsync(_settings, name, value, flags: CommandFlags.DemandMaster).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            throw new ClusterRegistryException($"cannot write the settings of cluster '{ClusterName}': {_connector.Describe(ex)}", ex);
        }
    }
}
