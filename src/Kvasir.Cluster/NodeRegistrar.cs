using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kvasir.Cluster;

public enum RegistrationState
{
    /// <summary>Not yet registered (the first heartbeat has not completed).</summary>
    Starting,
    /// <summary>The last heartbeat reached the registry.</summary>
    Registered,
    /// <summary>The registry cannot be reached: the node keeps serving the clients it has, and retries.</summary>
    Degraded,
    Stopped,
}

/// <summary>
/// Keeps one node registered: a heartbeat every <c>ttl / 4</c> renews its membership for
/// <c>ttl</c>; a clean stop removes it at once. Losing the registry never stops the node: the
/// state turns <see cref="RegistrationState.Degraded"/> (with the reason) and the next heartbeat
/// that gets through registers it again. So does any other heartbeat failure: the loop ends only at the stop.
/// </summary>
public sealed class NodeRegistrar : IAsyncDisposable
{
    private readonly IClusterRegistry _registry;
    private readonly Func<NodeRecord> _record;
    private readonly TimeSpan _ttl;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public NodeRegistrar(IClusterRegistry registry, Func<NodeRecord> record, TimeSpan ttl, ILoggerFactory? loggers = null)
    {
        if (ttl < TimeSpan.FromMilliseconds(400)) throw new ArgumentOutOfRangeException(nameof(ttl), "heartbeat TTL must be at least 0.4 s");
        _registry = registry;
        _record = record;
        _ttl = ttl;
        _log = (loggers ?? NullLoggerFactory.Instance).CreateLogger("Kvasir.Cluster");
    }

    public RegistrationState State { get; private set; } = RegistrationState.Starting;

    /// <summary>Why the state is Degraded; null otherwise.</summary>
    public string? Reason { get; private set; }

    /// <summary>
    /// Degraded because another live node, registered later, holds this node's id (<see cref="NodeIdConflictException"/>):
    /// a misconfiguration, not a lost registry. The heartbeats go on and register the node once the other one is gone.
    /// </summary>
    public bool IdConflict { get; private set; }

    /// <summary>Heartbeats that failed with an error other than a lost registry or an id conflict (each logged, then retried).</summary>
    public long Failures => Interlocked.Read(ref _failures);
    private long _failures;

    public IClusterRegistry Registry => _registry;

    /// <summary>Heartbeats that reached the registry.</summary>
    public long Heartbeats => Interlocked.Read(ref _heartbeats);
    private long _heartbeats;

    // Set by the first heartbeat that reached the registry: from then on every heartbeat is a renewal, which a live id
    // held by a node registered since refuses; until then each one is a first registration, which takes the id over.
    private volatile bool _registered;

    public TimeSpan Interval => _ttl / 4;

    public void Start() => _loop ??= Task.Run(LoopAsync);

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            await BeatAsync().ConfigureAwait(false);
            try { await Task.Delay(Interval, _stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
    }

    /// <summary>One heartbeat now; failures turn into the Degraded state, never exceptions.</summary>
    public async Task BeatAsync()
    {
        try
        {
            var record = _record();
            await _registry.HeartbeatAsync(record, _ttl, renewal: _registered).ConfigureAwait(false);
            _registered = true;
            Interlocked.Increment(ref _heartbeats);
            if (State != RegistrationState.Registered)
                _log.LogInformation("registered as {Id} ({Address}) in cluster {Cluster}{Again}", record.Id, record.Address,
                    _registry.ClusterName, State == RegistrationState.Degraded ? " again" : "");
            State = RegistrationState.Registered;
            Reason = null;
            IdConflict = false;
        }
        catch (NodeIdConflictException ex)
        {
            if (!IdConflict || Reason != ex.Message) _log.LogError("{Reason}", ex.Message);
            Degrade(ex.Message, idConflict: true);
        }
        catch (ClusterRegistryException ex)
        {
            if (State != RegistrationState.Degraded || IdConflict)
                _log.LogWarning("cluster registry unreachable, serving on without registration: {Reason}", ex.Message);
            Degrade(ex.Message, idConflict: false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_stop.IsCancellationRequested)
        {
            // Not a lost registry (a damaged one, a bug, a cancellation that is not this registrar's stop): the loop must
            // outlive it, or the registration lapses for good.
            Interlocked.Increment(ref _failures);
            string reason = $"heartbeat failed: {ex.GetType().Name}: {ex.Message}";
            if (Reason != reason) _log.LogError(ex, "cluster heartbeat failed unexpectedly, retrying every {Interval} ms", (long)Interval.TotalMilliseconds);
            Degrade(reason, idConflict: false);
        }
    }

    private void Degrade(string reason, bool idConflict)
    {
        Reason = reason;
        IdConflict = idConflict;
        State = RegistrationState.Degraded;
    }

    /// <summary>Stops the heartbeat and removes the node from the registry (best effort, bounded in time).</summary>
    public async Task StopAsync()
    {
        if (State == RegistrationState.Stopped) return;
        _stop.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        try
        {
            // With its own record: a node that took the id over since (a restart at a new address) keeps its registration.
            var record = _record();
            await _registry.UnregisterAsync(record.Id, record.ToJson()).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ClusterRegistryException or TimeoutException)
        {
            _log.LogWarning("could not unregister from the cluster (it expires by itself): {Reason}", ex.Message);
        }
        State = RegistrationState.Stopped;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _registry.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
