using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kvasir.Cluster;

/// <summary>
/// A client's view of the live nodes. It polls a two-number summary (epoch, live count) every
/// <c>pollInterval</c> and reads the full membership only when that changes (or every 30 s), and
/// a pub/sub message triggers a poll at once. If the registry becomes unreachable the last view is
/// kept: clients go on routing to the nodes they know. If it comes back empty (a restart without
/// persistence: its epoch went backwards), the nodes it forgot stay in the view until they have
/// registered again or <see cref="RegistryResetGrace"/> has passed, so keys are not placed on a
/// partial membership while the nodes' heartbeats refill it. After <see cref="FollowSettings"/> every poll also reads
/// the cluster's settings (one HGETALL), so a running client sees <c>kvasir cluster set</c>.
/// </summary>
public sealed class MembershipWatcher : IAsyncDisposable
{
    private static readonly TimeSpan FullRefresh = TimeSpan.FromSeconds(30);

    /// <summary>How long nodes a reset registry forgot are kept while they register again: twice the default heartbeat TTL.</summary>
    public static readonly TimeSpan RegistryResetGrace = TimeSpan.FromSeconds(10);

    private readonly IClusterRegistry _registry;
    private readonly TimeSpan _poll;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly bool _ownsRegistry;
    private ClusterSnapshot _current;
    private long _lastFullMs;
    private IReadOnlyList<NodeRecord>? _forgotten;
    private long _forgottenSinceMs;
    private Task? _loop;
    private ClusterSettings? _settings;
    private string? _badSettings;   // the last unusable stored value, logged once

    private MembershipWatcher(IClusterRegistry registry, ClusterSnapshot first, TimeSpan poll, bool ownsRegistry, ILogger log)
    {
        _registry = registry;
        _current = first;
        _poll = poll;
        _ownsRegistry = ownsRegistry;
        _log = log;
        _lastFullMs = Environment.TickCount64;
    }

    /// <summary>Reads the membership once (throws <see cref="ClusterRegistryException"/> if it cannot) and starts following it.</summary>
    public static async Task<MembershipWatcher> StartAsync(IClusterRegistry registry, TimeSpan pollInterval, bool ownsRegistry, ILoggerFactory? loggers = null)
    {
        var first = await registry.ReadAsync().ConfigureAwait(false);
        var watcher = new MembershipWatcher(registry, first, pollInterval, ownsRegistry,
            (loggers ?? NullLoggerFactory.Instance).CreateLogger("Kvasir.Cluster"));
        try { await registry.SubscribeAsync(watcher.Wake).ConfigureAwait(false); }
        catch (ClusterRegistryException ex) { watcher._log.LogWarning("membership changes will be seen by polling only: {Reason}", ex.Message); }
        watcher._loop = Task.Run(watcher.LoopAsync);
        return watcher;
    }

    public ClusterSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Raised (on a background thread) with the new view after membership changed.</summary>
    public event Action<ClusterSnapshot>? Changed;

    /// <summary>The cluster's settings as last read; null until <see cref="FollowSettings"/>.</summary>
    public ClusterSettings? Settings => Volatile.Read(ref _settings);

    /// <summary>Raised (on a background thread) with the new settings after a poll found them changed.</summary>
    public event Action<ClusterSettings>? SettingsChanged;

    /// <summary>
    /// From now on every poll reads the cluster's settings too, starting from <paramref name="current"/> (what the
    /// caller read when it connected). A stored value this build cannot use is logged once and the last good
    /// settings are kept.
    /// </summary>
    public void FollowSettings(ClusterSettings current) => Volatile.Write(ref _settings, current);

    /// <summary>
    /// The last poll's error: the registry unreachable (the reason names the Redis and the cause) or an unexpected failure
    /// (a damaged registry, a handler that threw); null while polls succeed.
    /// </summary>
    public string? LastError { get => Volatile.Read(ref _lastError); private set => Volatile.Write(ref _lastError, value); }
    private string? _lastError;

    /// <summary>Asks for a poll now (for instance after a node stopped answering).</summary>
    public void Wake()
    {
        try { _wake.Release(); }
        catch (SemaphoreFullException) { }
        catch (ObjectDisposedException) { }
    }

    /// <summary>Reads the whole membership now and publishes it if it changed.</summary>
    public async Task RefreshAsync()
    {
        var next = await _registry.ReadAsync().ConfigureAwait(false);
        _lastFullMs = Environment.TickCount64;
        var previous = Current;
        next = KeepForgotten(next, previous);
        if (next.Epoch == previous.Epoch && SameIds(next, previous)) return;
        Volatile.Write(ref _current, next);
        _log.LogInformation("cluster {Cluster}: {Count} live nodes (epoch {Epoch})", _registry.ClusterName, next.Nodes.Count, next.Epoch);
        Changed?.Invoke(next);
    }

    private async Task LoopAsync()
    {
        var backoff = TimeSpan.Zero;   // after an unexpected error: doubling from the poll interval up to MaxBackoff
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (backoff > TimeSpan.Zero) await Task.Delay(backoff, _stop.Token).ConfigureAwait(false);
                await _wake.WaitAsync(_poll, _stop.Token).ConfigureAwait(false);
                var (epoch, live) = await _registry.PollAsync().ConfigureAwait(false);
                var current = Current;
                if (epoch != current.Epoch || live != current.Nodes.Count || Environment.TickCount64 - _lastFullMs > FullRefresh.TotalMilliseconds)
                    await RefreshAsync().ConfigureAwait(false);
                if (Settings is not null) await RefreshSettingsAsync().ConfigureAwait(false);
                LastError = null;
                backoff = TimeSpan.Zero;
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested) { break; }
            catch (ClusterRegistryException ex)
            {
                Interlocked.Increment(ref _failures);
                if (LastError is null) _log.LogWarning("cluster registry unreachable, keeping the last view: {Reason}", ex.Message);
                LastError = ex.Message;
            }
            catch (Exception ex)
            {
                // Not a lost registry: a damaged one (a key of another shape), or a Changed handler that threw. The view
                // is kept and the loop goes on, slower, so it follows again once the cause is gone.
                Interlocked.Increment(ref _failures);
                string reason = $"{ex.GetType().Name}: {ex.Message}";
                backoff = backoff == TimeSpan.Zero ? _poll : TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                if (LastError != reason)
                    _log.LogError(ex, "cluster {Cluster}: membership poll failed, keeping the last view and retrying (every {Backoff} ms at most)",
                        _registry.ClusterName, (long)MaxBackoff.TotalMilliseconds);
                LastError = reason;
            }
        }
    }

    /// <summary>The longest wait between polls after unexpected errors (a damaged registry): 5 s.</summary>
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Polls that failed since the watcher started, whatever the cause (<see cref="LastError"/> names the last one): an
    /// unreachable registry (a warning logged when it goes) or an unexpected failure (each distinct one logged as an error,
    /// and the polls back off). The loop goes on either way.
    /// </summary>
    public long Failures => Interlocked.Read(ref _failures);
    private long _failures;

    private async Task RefreshSettingsAsync()
    {
        ClusterSettings next;
        try
        {
            next = await _registry.ReadSettingsAsync().ConfigureAwait(false);
            _badSettings = null;
        }
        catch (FormatException ex)
        {
            if (_badSettings != ex.Message) _log.LogWarning("cluster {Cluster}: keeping the settings last read: {Reason}", _registry.ClusterName, ex.Message);
            _badSettings = ex.Message;
            return;
        }
        var previous = Settings!;
        if (previous.Values.Count == next.Values.Count && previous.Values.All(p => next.Values.TryGetValue(p.Key, out var v) && v == p.Value)) return;
        Volatile.Write(ref _settings, next);
        _log.LogInformation("cluster {Cluster}: settings now {Settings}", _registry.ClusterName, string.Join(", ", next.Values.Select(p => $"{p.Key}={p.Value}")));
        SettingsChanged?.Invoke(next);
    }

    /// <summary>
    /// After a registry reset (the epoch went backwards), the previous view's nodes missing from <paramref name="next"/>
    /// are kept in it until they are all back or <see cref="RegistryResetGrace"/> has passed.
    /// </summary>
    private ClusterSnapshot KeepForgotten(ClusterSnapshot next, ClusterSnapshot previous)
    {
        if (next.Epoch < previous.Epoch && _forgotten is null && previous.Nodes.Count > 0)
        {
            _forgotten = previous.Nodes;
            _forgottenSinceMs = Environment.TickCount64;
            _log.LogWarning("cluster {Cluster}: the registry lost its state (epoch {Old} -> {New}); keeping the {Count} known nodes for up to {Grace} s while they register again",
                _registry.ClusterName, previous.Epoch, next.Epoch, previous.Nodes.Count, RegistryResetGrace.TotalSeconds);
        }
        if (_forgotten is null) return next;
        var missing = _forgotten.Where(f => !next.Nodes.Any(n => n.Id == f.Id)).ToList();
        if (missing.Count == 0 || Environment.TickCount64 - _forgottenSinceMs > RegistryResetGrace.TotalMilliseconds)
        {
            _forgotten = null;
            return next;
        }
        return next with { Nodes = [.. next.Nodes.Concat(missing).OrderBy(n => n.Id, StringComparer.Ordinal)] };
    }

    private static bool SameIds(ClusterSnapshot a, ClusterSnapshot b)
        => a.Nodes.Count == b.Nodes.Count && a.Nodes.Zip(b.Nodes).All(p => p.First.Id == p.Second.Id && p.First.Address == p.Second.Address);

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        if (_ownsRegistry) await _registry.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
        _wake.Dispose();
    }
}
