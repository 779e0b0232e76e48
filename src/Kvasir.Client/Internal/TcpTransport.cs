using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// A node reached over TCP through a small pool of pipelined connections. A broken connection is
/// replaced on next use; if the node cannot be reached the keys report Unavailable.
/// </summary>
internal sealed class TcpTransport : IKvTransport
{
    private readonly KvStoreOptions _options;
    private readonly string _host;
    private readonly int _port;
    private readonly byte[]? _authKey;
    private readonly TlsClientSettings? _tls;
    private readonly ClientConnection?[] _connections;
    private readonly SemaphoreSlim[] _connectLocks;
    private int _next;
    private volatile bool _disposed;

    private TcpTransport(KvStoreOptions options, TlsClientSettings? tls, ClientConnection first)
    {
        _options = options;
        _tls = tls;
        (_host, _port) = options.ParseServer();
        _authKey = options.AuthKey is null ? null : AuthHandshake.ParseKey(options.AuthKey);
        _connections = new ClientConnection?[options.ConnectionsPerNode];
        _connectLocks = Enumerable.Range(0, options.ConnectionsPerNode).Select(_ => new SemaphoreSlim(1, 1)).ToArray();
        _connections[0] = first;
        var h = first.Hello;
        SupportsVersions = first.Versions;
        Limits = new NodeLimits((long)h.MaxValueBytes, h.MaxKeyBytes, (int)h.MaxBatchKeys, (int)h.MaxMetaBytes, (long)h.Capacity, h.NodeId);
    }

    public NodeLimits Limits { get; }

    /// <summary>The node granted value versions on the first connection (every connection asks for them).</summary>
    public bool SupportsVersions { get; }

    public KvTransportKind Kind => KvTransportKind.Tcp;

    /// <summary>The node as "host:port".</summary>
    public string Address => $"{_host}:{_port}";

    public string Host => _host;

    public TimeSpan RequestTimeout => _options.RequestTimeout;

    /// <summary>Connects once up front so a wrong address or key fails here, with the reason.</summary>
    public static async Task<TcpTransport> ConnectAsync(KvStoreOptions options, CancellationToken ct)
    {
        var (host, port) = options.ParseServer();
        byte[]? key;
        try { key = options.AuthKey is null ? null : AuthHandshake.ParseKey(options.AuthKey); }
        catch (FormatException ex) { throw new KvasirException(ex.Message, ex); }
        var tls = options.Tls?.Load();
        var first = await ClientConnection.OpenAsync(host, port, key, tls, options.ClientName, options.ConnectTimeout, ct).ConfigureAwait(false);
        return new TcpTransport(options, tls, first);
    }

    /// <summary>A pooled connection (replaced when broken), or null when the node cannot be reached.</summary>
    internal async ValueTask<ClientConnection?> GetConnectionAsync(CancellationToken ct)
    {
        int slot = (int)((uint)Interlocked.Increment(ref _next) % (uint)_connections.Length);
        var c = Volatile.Read(ref _connections[slot]);
        if (c is { IsBroken: false }) return c;
        if (_disposed) return null;
        await _connectLocks[slot].WaitAsync(ct).ConfigureAwait(false);
        try
        {
            c = _connections[slot];
            if (c is { IsBroken: false }) return c;
            // Checked under the slot's lock, which DisposeAsync also takes: no connection opened here outlives the transport.
            if (_disposed) return null;
            if (c is not null) await c.DisposeAsync().ConfigureAwait(false);
            _connections[slot] = null;
            try
            {
                c = await ClientConnection.OpenAsync(_host, _port, _authKey, _tls, _options.ClientName, _options.ConnectTimeout, ct).ConfigureAwait(false);
            }
            catch (KvasirException) when (!ct.IsCancellationRequested)
            {
                return null;
            }
            Volatile.Write(ref _connections[slot], c);
            return c;
        }
        finally
        {
            _connectLocks[slot].Release();
        }
    }

    private async Task RunAsync(PendingRequest request, Opcode op, FrameFlags flags, byte[] meta, int metaLength,
        ValueSource[]? values, int start, int end, CancellationToken ct)
    {
        var connection = await GetConnectionAsync(ct).ConfigureAwait(false);
        if (connection is null)
        {
            request.Fail(KvStatus.Unavailable);
            return;
        }
        if (request is GetRequest get) get.Versioned = connection.Versions;
        await connection.SendAsync(request, op, flags, meta, metaLength, values, start, end, ct).ConfigureAwait(false);
        await connection.WaitAsync(request, _options.RequestTimeout, ct).ConfigureAwait(false);
    }

    public async Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        int count = end - start;
        var versions = SupportsVersions ? batch.Versions : null;
        int size = PutRequest.PrefixSize(parent.Span, hasParent);
        for (int i = start; i < end; i++) size += PutRequest.EntrySize(batch.Keys[i].Length) + (versions is null ? 0 : ValueVersions.Size);
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, parent.Span, hasParent, count);
        for (int i = start; i < end; i++)
        {
            if (versions is null) PutRequest.WriteEntry(ref w, batch.Keys[i].Span, batch.Values[i].Length);
            else PutRequest.WriteEntry(ref w, batch.Keys[i].Span, batch.Values[i].Length, versions[i]);
        }
        var flags = (chain ? FrameFlags.Chain : 0) | (hasParent ? FrameFlags.ChainParent : 0) | (versions is null ? 0 : FrameFlags.Version);
        var request = new StatusListRequest(batch.Results, start, count);
        await RunAsync(request, Opcode.Put, flags, meta, size, batch.Values, start, end, ct).ConfigureAwait(false);
    }

    public async Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        var meta = KeyBatchMeta(batch.Keys, start, end);
        await RunAsync(new GetRequest(batch, start, end - start), Opcode.Get, FrameFlags.None, meta, meta.Length, null, 0, 0, ct).ConfigureAwait(false);
    }

    public async Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
    {
        var meta = KeyBatchMeta(keys, start, end);
        await RunAsync(new StatusListRequest(results, start, end - start), op, FrameFlags.None, meta, meta.Length, null, 0, 0, ct).ConfigureAwait(false);
    }

    public async Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct)
        => StatsReply.Read(await CallAsync(Opcode.Stats, [], ct).ConfigureAwait(false));

    public async Task PingAsync(CancellationToken ct) => await CallAsync(Opcode.Ping, [], ct).ConfigureAwait(false);

    /// <summary>A request whose reply metadata the caller parses; throws <see cref="KvasirException"/> with the reason when it fails.</summary>
    internal async Task<byte[]> CallAsync(Opcode op, byte[] meta, CancellationToken ct)
    {
        var connection = await GetConnectionAsync(ct).ConfigureAwait(false)
            ?? throw new KvasirException($"node {_host}:{_port} is unavailable");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            return await connection.CallAsync(op, meta, timeout.Token, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new KvasirException($"{op} timed out after {_options.RequestTimeout}");
        }
    }

    internal static byte[] KeyBatchMeta(IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end)
    {
        var meta = new byte[KeyBatchRequest.Size(keys, start, end - start)];
        var w = new MetaWriter(meta);
        KeyBatchRequest.Write(ref w, keys, start, end - start);
        return meta;
    }

    /// <summary>Closes every connection; calls still running or made later report Unavailable.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        for (int slot = 0; slot < _connections.Length; slot++)
        {
            await _connectLocks[slot].WaitAsync().ConfigureAwait(false);
            try
            {
                if (_connections[slot] is { } c) await c.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                _connectLocks[slot].Release();
            }
        }
    }
}
