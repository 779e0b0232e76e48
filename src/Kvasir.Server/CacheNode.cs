using System.Net;
using System.Net.Sockets;
using Kvasir.Cluster;
using Kvasir.Protocol;
using Kvasir.Server.Internal;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kvasir.Server;

/// <summary>
/// A cache node: one arena store served over the Kvasir wire protocol on a TCP port.
/// Start with <see cref="Start"/>; <see cref="StopAsync"/> stops accepting, lets in-flight
/// requests finish (up to <see cref="NodeOptions.DrainTimeout"/>), then frees the arena.
/// </summary>
public sealed class CacheNode : IAsyncDisposable
{
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _connectionsLock = new();
    private readonly HashSet<Connection> _connections = [];
    private readonly Dictionary<System.Net.IPAddress, int> _connectionsByAddress = [];
    private long _shmLeasesHeld;
    private readonly Internal.LogLimiter _refusalLog = new(TimeSpan.FromSeconds(10));

    /// <summary>Per-connection warnings (cut, refused frames) go through this limiter: a client cannot fill the log.</summary>
    internal Internal.LogLimiter ConnectionWarnings { get; } = new(TimeSpan.FromSeconds(10));
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private int _stopped;
    private long _inProcessCalls;   // TryEnterInProcessCall: calls of in-process clients inside the store now
    private readonly TaskCompletionSource _inProcessDrained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private FileStream? _liveness;   // the arena's flock: held while this node lives (ShmFiles.HoldLiveness)

    public CacheNode(NodeOptions options, ILoggerFactory? loggerFactory = null)
    {
        options.Validate();
        Options = options;
        // Loaded first: a bad certificate or key file fails here, before the arena is allocated.
        Tls = options.HasTls ? Kvasir.Net.TlsServerSettings.Load(options.TlsCertFile!, options.TlsKeyFile!, options.TlsClientCaFile) : null;
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _log = LoggerFactory.CreateLogger("Kvasir.Node");
        var storeOptions = options.Store;
        if (options.HasSharedMemoryArena && OperatingSystem.IsLinux())
        {
            ShmFiles.RemoveStale();
            string arenaPath = ShmFiles.NewPath();
            _liveness = ShmFiles.HoldLiveness(arenaPath);   // before the arena exists: a sweep never sees it unlocked
            storeOptions = storeOptions.WithSharedMemoryPath(arenaPath);
        }
        // The tiered store is the node's one entry point to its data: every handler, the shm ops and the
        // in-process client go through it, and the tier rules live inside it (docs/tiers.md).
        try
        {
            Store = new TieredStore(storeOptions, options.Tiers);
        }
        catch
        {
            ReleaseLiveness(storeOptions.SharedMemoryPath);
            throw;
        }
        try
        {
            if (Store.SharedMemoryPath is { } arenaPath && OperatingSystem.IsLinux())
            {
                ShmToken = ShmFiles.WriteToken(arenaPath);
                ArenaSecret = ShmFiles.WriteSecret(arenaPath, Store.Options.Capacity);
            }
        }
        catch
        {
            Store.Dispose();
            ReleaseLiveness(Store.SharedMemoryPath);
            throw;
        }
        StartedAt = DateTimeOffset.UtcNow;
        MetaBudget = new Internal.MetaBudget(options.MaxBufferedMetaBytes);
        LargeMetaPool = System.Buffers.ArrayPool<byte>.Create(options.MaxMetaBytes, 4);
        AccessStats = new Admin.AccessStats(options.AccessStatsCapacity);
        Metrics = new Admin.NodeMetrics(this);
        AccessLog = options.AccessLog is { } path ? new Admin.AccessLog(path) : null;
        Exporter = new Admin.PrometheusExporter(Metrics.Meter);
        Counters.Metrics = Metrics;
    }

    /// <summary>The data port's TLS settings, loaded from <see cref="NodeOptions.TlsCertFile"/>; null for plaintext.</summary>
    internal Kvasir.Net.TlsServerSettings? Tls { get; }

    /// <summary>The token of the shared-memory arena (also in its .token file), or null without one.</summary>
    public byte[]? ShmToken { get; }

    /// <summary>
    /// The arena file's secret (at offset capacity in the file, past what clients map; <see cref="Kvasir.Protocol.ArenaProof"/>),
    /// or null without a shared-memory arena. A connection that proves it read it needs no zeroed reservations.
    /// </summary>
    internal byte[]? ArenaSecret { get; }

    /// <summary>The access log, when <see cref="NodeOptions.AccessLog"/> is set.</summary>
    public Admin.AccessLog? AccessLog { get; }

    /// <summary>The node's System.Diagnostics.Metrics instruments.</summary>
    public Admin.NodeMetrics Metrics { get; }

    /// <summary>Renders <see cref="Metrics"/> as Prometheus text (GET /metrics).</summary>
    public Admin.PrometheusExporter Exporter { get; }

    /// <summary>GET key popularity, per second (the dashboard's heatmap).</summary>
    public Admin.KeyHeatmap Heatmap { get; } = new();

    /// <summary>The last <see cref="NodeOptions.AccessStatsCapacity"/> GET and LEASE accesses (admin GET /v1/access-stats).</summary>
    public Admin.AccessStats AccessStats { get; }

    /// <summary>The admin HTTP server, when <see cref="NodeOptions.AdminPort"/> is set.</summary>
    public Admin.AdminServer? Admin { get; private set; }

    /// <summary>The bound admin port (the real one when <see cref="NodeOptions.AdminPort"/> is 0), or 0 without admin.</summary>
    public int AdminPort => Admin?.Port ?? 0;

    /// <summary>
    /// The admin address others can open ("host:port"; null without admin): the admin host, or the advertised data host when
    /// the admin port listens on every address.
    /// </summary>
    public string? AdminAddress
    {
        get
        {
            if (Admin is null) return null;
            string host = Options.AdminHost;
            if (host is "0.0.0.0" or "::" && Kvasir.Cluster.Endpoint.TryParse(DataAddress, out var data)) host = data.Host;
            return Kvasir.Cluster.Endpoint.Format(host, AdminPort);
        }
    }

    /// <summary>Accepting connections: started and not stopping.</summary>
    public bool IsServing => _listener is not null && !_stop.IsCancellationRequested;

    public NodeOptions Options { get; }

    /// <summary>The node's tiered store (DRAM and the tiers below): what every transport, in-process clients included, serves from.</summary>
    public TieredStore Store { get; }

    /// <summary>Components that are not healthy right now (arena refusing writes, tier I/O errors, disk full, Redis unreachable), with the reason; empty when healthy.</summary>
    public IReadOnlyList<(string Component, string Reason)> Problems()
    {
        var list = new List<(string, string)>(Store.Problems());
        if (ArenaHealth.Problem() is { } arena) list.Insert(0, ("arena", arena));
        if (Registration is { State: RegistrationState.Degraded, Reason: var r } registration)
            list.Add((registration.IdConflict ? "node_id" : "redis", r ?? "unreachable"));
        return list;
    }

    public NodeCounters Counters { get; } = new();

    /// <summary>Request metadata being received now, above 64 KiB per request (bounded by <see cref="NodeOptions.MaxBufferedMetaBytes"/>).</summary>
    public long MetaBytesBuffered => MetaBudget.Used;

    internal Internal.MetaBudget MetaBudget { get; }

    /// <summary>Backoff for addresses whose AUTH failed.</summary>
    internal Internal.AuthThrottle AuthThrottle { get; } = new();

    /// <summary>Large metadata buffers come from this pool, which keeps at most 4 arrays per size: a burst of large batches is not held after it.</summary>
    internal System.Buffers.ArrayPool<byte> LargeMetaPool { get; }

    /// <summary>Connections open now.</summary>
    public int OpenConnections { get { lock (_connectionsLock) return _connections.Count; } }

    /// <summary>Shared-memory leases held by all connections now (bounded by <see cref="NodeOptions.MaxLeases"/>).</summary>
    public long ShmLeasesHeld => Interlocked.Read(ref _shmLeasesHeld);

    /// <summary>
    /// Enters one call of a client in this process on <see cref="Store"/> (Kvasir.Embedded): true while the node is
    /// not stopping, and then the caller must <see cref="LeaveInProcessCall"/> when it no longer touches the store or
    /// memory it handed out (a reservation being filled, a lease being copied). <see cref="StopAsync"/> refuses new
    /// calls from its start and frees the arena only after every entered call has left: the in-process twin of
    /// draining connections, without which a stop under a copy freed the memory it was copying.
    /// </summary>
    public bool TryEnterInProcessCall()
    {
        Interlocked.Increment(ref _inProcessCalls);
        if (!_stop.IsCancellationRequested) return true;
        LeaveInProcessCall();
        return false;
    }

    /// <summary>Leaves a call entered with <see cref="TryEnterInProcessCall"/>.</summary>
    public void LeaveInProcessCall()
    {
        if (Interlocked.Decrement(ref _inProcessCalls) == 0 && _stop.IsCancellationRequested) _inProcessDrained.TrySetResult();
    }

    /// <summary>Takes one of the node-wide lease slots; false when all <see cref="NodeOptions.MaxLeases"/> are held.</summary>
    internal bool TryTakeLeaseSlot()
    {
        if (Interlocked.Increment(ref _shmLeasesHeld) <= Options.MaxLeases) return true;
        Interlocked.Decrement(ref _shmLeasesHeld);
        return false;
    }

    /// <summary>Gives back <paramref name="count"/> lease slots.</summary>
    internal void ReturnLeaseSlots(int count) => Interlocked.Add(ref _shmLeasesHeld, -count);

    /// <summary>The DRAM arena's health: degraded while writes are refused for lack of memory.</summary>
    public ArenaHealth ArenaHealth { get; } = new();

    public DateTimeOffset StartedAt { get; }

    internal ILoggerFactory LoggerFactory { get; }

    /// <summary>The bound data port (the real one when <see cref="NodeOptions.Port"/> is 0).</summary>
    public int Port { get; private set; }

    /// <summary>The node's id: <see cref="NodeOptions.NodeId"/>, else the advertised address, else host:port.</summary>
    public string NodeId => Options.NodeId ?? Options.Cluster?.Advertise ?? Kvasir.Cluster.Endpoint.Format(Options.Host, Port);

    /// <summary>The address clients should use: the advertised one, else the bound host and port.</summary>
    public string DataAddress => Options.Cluster?.Advertise ?? Kvasir.Cluster.Endpoint.Format(Options.Host, Port);

    /// <summary>Cluster registration, when <see cref="NodeOptions.Cluster"/> is set (available once <see cref="Start"/> returned).</summary>
    public NodeRegistrar? Registration { get; private set; }

    private Task _joining = Task.CompletedTask;

    internal CancellationToken Stopping => _stop.Token;

    /// <summary>Binds the data port and starts accepting. Throws <see cref="SocketException"/> when the port is taken.</summary>
    public void Start()
    {
        var address = IPAddress.Parse(Options.Host);
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // SO_REUSEADDR alone (restart while old connections sit in TIME_WAIT). .NET's ReuseAddress
            // also sets SO_REUSEPORT on Linux, which would let a second node bind the same port.
            if (OperatingSystem.IsLinux()) listener.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
            listener.Bind(new IPEndPoint(address, Options.Port));
            listener.Listen(512);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        Port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        if (Options.AdminPort is int adminPort)
        {
            try
            {
                Admin = Kvasir.Server.Admin.AdminServer.StartAsync(this, Options.AdminHost, adminPort).GetAwaiter().GetResult();
            }
            catch (IOException ex)
            {
                listener.Dispose();
                throw new SocketException((int)SocketError.AddressAlreadyInUse, $"admin port {Options.AdminHost}:{adminPort}: {ex.Message}");
            }
        }
        if (Admin is not null && Options.AuthKey is null && !IPAddress.IsLoopback(IPAddress.Parse(Options.AdminHost)))
            _log.LogWarning("admin HTTP on {Host}:{Port} without an auth key: anyone who can reach it reads status, metrics and the dashboard", Options.AdminHost, AdminPort);
        _listener = listener;
        _acceptLoop = Task.Run(AcceptLoopAsync);
        _log.LogInformation("kvasir node {NodeId} serving on {Host}:{Port}, {Capacity} bytes, auth {Auth}",
            NodeId, Options.Host, Port, Options.Store.Capacity, Options.AuthKey is null ? "off" : "on");
        if (Options.Cluster is { } cluster) _joining = JoinAsync(cluster);
    }

    /// <summary>
    /// Registers in the cluster in the background: the node serves at once, whether or not Redis
    /// answers; the registrar's state says which (Degraded while Redis cannot be reached).
    /// </summary>
    private async Task JoinAsync(ClusterJoinOptions cluster)
    {
        IClusterRegistry registry;
        try
        {
            registry = await RedisClusterRegistry.ConnectAsync(cluster.ParsedRedisUrl(), cluster.Name, cluster.RedisTimeout).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _log.LogError("cannot set up cluster registration, serving standalone: {Reason}", ex.Message);
            return;
        }
        var version = typeof(CacheNode).Assembly.GetName().Version?.ToString(3) ?? "0";
        var record = new NodeRecord
        {
            Id = NodeId,
            Address = DataAddress,
            AdminAddress = AdminAddress,
            Capacity = Options.Store.Capacity,
            Version = version,
            StartedMs = StartedAt.ToUnixTimeMilliseconds(),
            Kind = cluster.Kind,
            Tls = Options.HasTls,
        };
        var registrar = new NodeRegistrar(registry, () => record, cluster.HeartbeatTtl, LoggerFactory);
        Registration = registrar;
        if (_stop.IsCancellationRequested) return;
        await registrar.BeatAsync().ConfigureAwait(false);
        registrar.Start();
    }

    /// <summary>Stats as sent in the STATS reply: storage, connection and traffic counters.</summary>
    public List<KeyValuePair<string, long>> StatsSnapshot()
    {
        var s = Store.GetStats();
        var c = Counters;
        var list = new List<KeyValuePair<string, long>>
        {
            new("capacity_bytes", s.Capacity),
            new("allocated_bytes", s.AllocatedBytes),
            new("live_bytes", s.LiveBytes),
            new("keys", s.Keys),
            new("reservations", s.Reservations),
            new("leases", s.ActiveLeases),
            new("pinned_keys", s.PinnedKeys),
            new("hits", s.Hits),
            new("misses", s.Misses),
            new("puts", s.Puts),
            new("removes", s.Removes),
            new("evictions", s.Evictions),
            new("evicted_bytes", s.EvictedBytes),
            new("out_of_memory", s.OutOfMemory),
            new("late_parent_links", s.LateParentLinks),
            new("late_parent_waits", s.LateParentWaits),
            new("expired", Store.ExpiredCount),
            new("quota_refusals", Store.QuotaRefusals),
            new("utilisation_ppm", (long)(s.Utilisation * 1_000_000)),
            new("connections", c.Connections),
            new("connections_total", c.ConnectionsTotal),
            new("connections_refused", c.ConnectionsRefused),
            new("shm_leases_held", ShmLeasesHeld),
            new("meta_bytes_buffered", MetaBytesBuffered),
            new("bytes_in", c.BytesIn),
            new("bytes_out", c.BytesOut),
            new("protocol_errors", c.ProtocolErrors),
            new("auth_failures", c.AuthFailures),
            new("crc_mismatches", Store.CrcMismatches),
            new("uptime_ms", (long)(DateTimeOffset.UtcNow - StartedAt).TotalMilliseconds),
            new("cluster_state", Registration is null ? 0 : 1 + (long)Registration.State),
            new("cluster_heartbeats", Registration?.Heartbeats ?? 0),
            new("connection_requests_in_flight_peak", c.RequestsInFlightPeak),
        };
        list.AddRange(Store.TierStats());
        list.Add(new("degraded", Problems().Count > 0 ? 1 : 0));
        foreach (var op in Enum.GetValues<Opcode>())
            list.Add(new($"requests_{op.ToString().ToLowerInvariant()}", c.Requests(op)));
        return list;
    }

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { break; }
            catch (ObjectDisposedException) { break; }
            catch (SocketException ex)
            {
                _log.LogWarning("accept failed: {Reason}", ex.Message);
                continue;
            }
            Connection connection;
            var address = (socket.RemoteEndPoint as System.Net.IPEndPoint)?.Address ?? System.Net.IPAddress.None;
            lock (_connectionsLock)
            {
                int fromAddress = _connectionsByAddress.GetValueOrDefault(address);
                string? refusal = _connections.Count >= Options.MaxConnections ? $"{Options.MaxConnections} connections open (--max-connections)"
                    : fromAddress >= Options.MaxConnectionsPerAddress ? $"{fromAddress} connections open from {address} (--max-connections-per-address)"
                    : null;
                if (refusal is not null)
                {
                    Counters.Refused();
                    _refusalLog.Warn(_log, $"connection from {socket.RemoteEndPoint} refused: {refusal}");
                    socket.Dispose();
                    continue;
                }
                connection = new Connection(this, socket);
                _connections.Add(connection);
                _connectionsByAddress[address] = fromAddress + 1;
            }
            _ = RunConnectionAsync(connection, address);
        }
    }

    private async Task RunConnectionAsync(Connection connection, System.Net.IPAddress address)
    {
        Counters.Opened();
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            Counters.Closed();
            lock (_connectionsLock)
            {
                _connections.Remove(connection);
                if (_connectionsByAddress[address] == 1) _connectionsByAddress.Remove(address);
                else _connectionsByAddress[address]--;
            }
        }
    }

    /// <summary>
    /// Stops accepting, lets every connection finish the request it is serving and send its queued
    /// replies, cuts connections still busy after the drain timeout, refuses new in-process calls and
    /// waits for those under way (<see cref="TryEnterInProcessCall"/>), and frees the arena only once
    /// neither a connection nor an in-process call can touch it.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        _stop.Cancel();   // from here /v1/ready answers 503; the admin port stays up through the drain
        // Leave the cluster first, so clients stop routing here while in-flight requests drain.
        await _joining.ConfigureAwait(false);
        if (Registration is not null) await Registration.DisposeAsync().ConfigureAwait(false);
        _listener?.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        Task[] running;
        lock (_connectionsLock) running = _connections.Select(c => c.Completion).ToArray();
        var all = Task.WhenAll(running);
        if (await Task.WhenAny(all, Task.Delay(Options.DrainTimeout)).ConfigureAwait(false) != all)
        {
            _log.LogWarning("drain timeout: cutting {Count} busy connections", running.Count(t => !t.IsCompleted));
            lock (_connectionsLock) foreach (var c in _connections) c.Abort("node stopping");
            await all.ConfigureAwait(false);
        }
        // In-process calls were refused from the Cancel above; those already inside copy to the end (no timeout: a
        // copy cannot be cut, and the arena must outlive it).
        if (Interlocked.Read(ref _inProcessCalls) != 0)
        {
            if (await Task.WhenAny(_inProcessDrained.Task, Task.Delay(Options.DrainTimeout)).ConfigureAwait(false) != _inProcessDrained.Task)
                _log.LogWarning("drain timeout: still waiting for {Count} in-process calls before freeing the arena", Interlocked.Read(ref _inProcessCalls));
            await _inProcessDrained.Task.ConfigureAwait(false);
        }
        // Admin handlers read the store and the tiers: stop them before either is freed.
        if (Admin is not null) await Admin.DisposeAsync().ConfigureAwait(false);
        if (Store.SharedMemoryPath is { } shm && OperatingSystem.IsLinux()) ShmFiles.RemoveToken(shm);
        if (AccessLog is not null) await AccessLog.DisposeAsync().ConfigureAwait(false);
        Exporter.Dispose();
        Metrics.Dispose();
        Store.Dispose();   // finishes queued tier writes and flushes the disk tier before the arena goes
        ReleaseLiveness(Store.SharedMemoryPath);
        _log.LogInformation("kvasir node {NodeId} stopped", NodeId);
    }

    private void ReleaseLiveness(string? arenaPath)
    {
        if (_liveness is { } held && arenaPath is not null && OperatingSystem.IsLinux()) ShmFiles.ReleaseLiveness(held, arenaPath);
        _liveness = null;
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);
}
