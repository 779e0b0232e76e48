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
    private readonly OpenBackoff _backoff = new();
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
        Check = new ValueCheck(options.VerifyValueCrc, options.LoggerFactory);
        var h = first.Hello;
        SupportsVersions = first.Versions;
        SupportsTtl = (h.Features & ProtocolFeatures.Ttl) != 0;
        Limits = new NodeLimits((long)h.MaxValueBytes, h.MaxKeyBytes, (int)h.MaxBatchKeys, (int)h.MaxMetaBytes, (long)h.Capacity, h.NodeId);
    }

    public NodeLimits Limits { get; }

    /// <summary>GET hits checked against their CRC (<see cref="KvStoreOptions.VerifyValueCrc"/>), over TCP and over this node's arena.</summary>
    public ValueCheck Check { get; }

    public long ChecksumMismatches => Check.Mismatches;

    /// <summary>The node granted value versions on the first connection (every connection asks for them).</summary>
    public bool SupportsVersions { get; }

    public KvTransportKind Kind => KvTransportKind.Tcp;

    /// <summary>The node as "host:port".</summary>
    public string Address => $"{_host}:{_port}";

    public string Host => _host;

    /// <summary>Why <see cref="KvTransportKind.Auto"/> kept this node on TCP (null when TCP was asked for).</summary>
    public string? FallbackReason { get; set; }

    public TimeSpan RequestTimeout => _options.RequestTimeout;

    /// <summary>Connects once up front so a wrong address or key fails here, with the reason.</summary>
    public static async Task<TcpTransport> ConnectAsync(KvStoreOptions options, CancellationToken ct)
    {
        var (host, port) = options.ParseServer();
        byte[]? key;
        try { key = options.AuthKey is null ? null : AuthHandshake.ParseKey(options.AuthKey); }
        catch (FormatException ex) { throw new KvasirException(ex.Message, ex); }
        var tls = options.Tls?.Load();
        var first = await ClientConnection.OpenAsync(host, port, key, tls, options.ClientName, options.ConnectTimeout, ct, Features(options)).ConfigureAwait(false);
        return new TcpTransport(options, tls, first);
    }

    /// <summary>A pooled connection (replaced when broken), or null when the node cannot be reached.</summary>
    internal async ValueTask<ClientConnection?> GetConnectionAsync(CancellationToken ct)
    {
        int n = _connections.Length;
        int slot = (int)((uint)Interlocked.Increment(ref _next) % (uint)n);
        // An open connection with nothing outstanding first: a request queued behind another one's transfer waits for
        // its send lock and its reply, while a connection beside it may sit idle. Slots never opened are not searched,
        // so a caller with one request at a time keeps to one connection.
        for (int i = 0; i < n; i++)
        {
            var idle = Volatile.Read(ref _connections[(slot + i) % n]);
            if (idle is { IsBroken: false, Outstanding: 0 }) return idle;
        }
        return await SlotConnectionAsync(slot, ct).ConfigureAwait(false) ?? AnyOpen();
    }

    /// <summary>
    /// An open connection, the one with the fewest requests outstanding; null when none is open. For a request whose own
    /// slot could not be opened: a node at its connection limit (<c>--max-connections</c>, <c>--max-connections-per-address</c>)
    /// closes every further connection at HELLO, and the request's keys were Unavailable while a connection the node had
    /// accepted was open beside it (found by StripeTests). The request queues there as any two requests on one connection do.
    /// </summary>
    private ClientConnection? AnyOpen()
    {
        ClientConnection? best = null;
        for (int i = 0; i < _connections.Length; i++)
        {
            var c = Volatile.Read(ref _connections[i]);
            if (c is { IsBroken: false } && (best is null || c.Outstanding < best.Outstanding)) best = c;
        }
        return best;
    }

    /// <summary>
    /// Slots a striped request may use, one stripe each (<see cref="KvStoreOptions.StripeBytes"/>): those whose connection
    /// is open with nothing outstanding, or never opened (or broken, to be replaced); at most <paramref name="most"/>.
    /// Another caller may pick the same slot at the same moment: its request then queues on that connection, as any
    /// two requests on one connection do.
    /// </summary>
    private List<int> FreeSlots(int most)
    {
        int n = _connections.Length;
        int first = (int)((uint)Interlocked.Increment(ref _next) % (uint)n);
        var slots = new List<int>(Math.Min(most, n));
        bool mayOpen = !_backoff.Holding;   // a node that refused a connection lately: only the open ones count
        for (int i = 0; i < n && slots.Count < most; i++)
        {
            int slot = (first + i) % n;
            var c = Volatile.Read(ref _connections[slot]);
            if (c is null || c.IsBroken ? mayOpen : c.Outstanding == 0) slots.Add(slot);
        }
        return slots;
    }

    /// <summary>
    /// The connection of <paramref name="slot"/>, opened (or replaced when broken) if need be; null when the node cannot be
    /// reached, or when it refused a connection lately and another is open (<see cref="OpenBackoff"/>: the caller then
    /// uses that one).
    /// </summary>
    private async ValueTask<ClientConnection?> SlotConnectionAsync(int slot, CancellationToken ct)
    {
        var c = Volatile.Read(ref _connections[slot]);
        if (c is { IsBroken: false }) return c;
        if (_disposed) return null;
        bool probe = false;
        if (AnyOpen() is not null && _backoff.TryHoldBack(out probe)) return null;
        bool answered = false;
        try
        {
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
                    c = await ClientConnection.OpenAsync(_host, _port, _authKey, _tls, _options.ClientName, _options.ConnectTimeout, ct, Features(_options)).ConfigureAwait(false);
                }
                catch (KvasirException) when (!ct.IsCancellationRequested)
                {
                    // Refused while another connection serves: a node at its connection limit, most likely. Alone, it is
                    // the node that cannot be reached, and the next call must try again.
                    if (AnyOpen() is not null)
                    {
                        _backoff.Refused(probe);
                        answered = true;
                    }
                    return null;
                }
                Volatile.Write(ref _connections[slot], c);
                _backoff.Opened();
                answered = true;
                return c;
            }
            finally
            {
                _connectLocks[slot].Release();
            }
        }
        finally
        {
            if (probe && !answered) _backoff.Abandoned();
        }
    }


    /// <summary>
    /// Runs [<paramref name="start"/>, <paramref name="end"/>) as one request, or, when it carries at least twice
    /// <see cref="KvStoreOptions.StripeBytes"/> and two or more connections are free, as one request per free connection
    /// over contiguous runs of its keys (<see cref="Stripes"/>). <paramref name="send"/> sends one run on the slot's
    /// connection (<see cref="AnySlot"/>: whichever <see cref="GetConnectionAsync"/> picks).
    /// </summary>
    private Task StripedAsync(int start, int end, Func<int, long> length, Func<int, int, int, Task> send, Func<bool>? mayStripe = null)
    {
        int most = _connections.Length;
        if (_options.StripeBytes <= 0 || most < 2 || end - start < 2) return send(start, end, AnySlot);
        var runs = Stripes.Split(start, end, most, _options.StripeBytes, length);
        if (runs.Count < 2 || (mayStripe is not null && !mayStripe())) return send(start, end, AnySlot);
        var slots = FreeSlots(runs.Count);
        if (slots.Count < 2) return send(start, end, AnySlot);
        if (slots.Count < runs.Count) runs = Stripes.Split(start, end, slots.Count, _options.StripeBytes, length);
        // Every run but the last starts on a thread of its own: a PUT's send checksums and copies its values on the
        // calling thread until the socket pushes back, which over loopback it rarely does, so runs started in a plain
        // loop would each be sent whole before the next began, all on one core (measured: no gain at all for SET).
        var sends = new Task[runs.Count];
        for (int i = 0; i < runs.Count - 1; i++)
        {
            var (s, e, slot) = (runs[i].Start, runs[i].End, slots[i]);
            sends[i] = Task.Run(() => send(s, e, slot));
        }
        sends[^1] = send(runs[^1].Start, runs[^1].End, slots[runs.Count - 1]);
        return Task.WhenAll(sends);
    }

    private const int AnySlot = -1;

    private ValueTask<ClientConnection?> ConnectionAsync(int slot, CancellationToken ct)
        => slot == AnySlot ? GetConnectionAsync(ct) : StripeConnectionAsync(slot, ct);

    /// <summary>A run's connection: its slot's, or, when that cannot be opened, any open one (<see cref="AnyOpen"/>).</summary>
    private async ValueTask<ClientConnection?> StripeConnectionAsync(int slot, CancellationToken ct)
        => await SlotConnectionAsync(slot, ct).ConfigureAwait(false) ?? AnyOpen();

    /// <summary>
    /// Features asked for: the writer's CRC when sent, always the arena proof (used only by the shared-memory transport),
    /// and late parents (striped chains).
    /// </summary>
    private static ulong Features(KvStoreOptions options) =>
        (options.SendValueCrc ? ProtocolFeatures.ValueCrc | ProtocolFeatures.CrcTrailer : 0) | ProtocolFeatures.ArenaProof | ProtocolFeatures.CommitChain
        | ProtocolFeatures.LateParent;

    private async Task RunAsync(PendingRequest request, Opcode op, FrameFlags flags, byte[] meta, int metaLength,
        ValueSource[]? values, int start, int end, CancellationToken ct, int slot = AnySlot)
    {
        var connection = await ConnectionAsync(slot, ct).ConfigureAwait(false);
        if (connection is null)
        {
            request.Fail(KvStatus.Unavailable);
            return;
        }
        await SendAndWaitAsync(connection, request, op, flags, meta, metaLength, values, start, end, ct).ConfigureAwait(false);
    }

    private async Task SendAndWaitAsync(ClientConnection connection, PendingRequest request, Opcode op, FrameFlags flags, byte[] meta, int metaLength,
        ValueSource[]? values, int start, int end, CancellationToken ct)
    {
        if (request is GetRequest get) get.Versioned = connection.Versions;
        await connection.SendAsync(request, op, flags, meta, metaLength, values, start, end, ct).ConfigureAwait(false);
        await connection.WaitAsync(request, _options.RequestTimeout, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// One PUT request. On a connection granted VALUE_CRC the node does not checksum the bytes as they arrive: the writer's
    /// CRC-32C of each value comes with it. CRCs the caller gave go in the entries (VALUE_CRC); computed ones go after each
    /// value (CRC_TRAILER, where granted), checksummed as the value is sent so its bytes are read from memory once; an
    /// older node without CRC_TRAILER gets them computed up front, in the entries.
    /// </summary>
    /// <remarks>
    /// A PUT of at least twice <see cref="KvStoreOptions.StripeBytes"/> is striped over free connections
    /// (<see cref="StripedAsync"/>), unless it names a key twice (the last value must win). A chain is striped only where
    /// the node links late parents (feature <see cref="ProtocolFeatures.LateParent"/>): its first run continues the
    /// batch's parent, every other run the last key of the run before it, which may be published after it on another
    /// connection (<see cref="FrameFlags.ParentFollows"/>), so the node links the runs into one chain whatever order
    /// they land in. Without the feature a chain goes whole, in order.
    /// </remarks>
    public Task PutAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, CancellationToken ct)
    {
        if (!WorthStriping(end - start, PutBytes(batch, start, end)) || (chain && !LinksLateParents()))
            return PutRunAsync(batch, start, end, chain, parent, hasParent, AnySlot, ct);
        Func<int, int, int, Task> run = !chain
            ? (s, e, slot) => PutRunAsync(batch, s, e, false, default, false, slot, ct)
            : (s, e, slot) => s == start
                ? PutRunAsync(batch, s, e, true, parent, hasParent, slot, ct)
                : PutRunAsync(batch, s, e, true, batch.Keys[s - 1], true, slot, ct, parentFollows: true);
        return StripedAsync(start, end, i => batch.Values[i].Length, run,
            mayStripe: () => !Stripes.HasDuplicateKey(batch.Keys, start, end));   // asked only of a batch large enough to stripe
    }

    /// <summary>Whether the node links a chain's late parents (asked of an open connection; none open yet: a chain goes whole).</summary>
    private bool LinksLateParents() => AnyOpen() is { } c && (c.Features & ProtocolFeatures.LateParent) != 0;

    private async Task PutRunAsync(PutBatch batch, int start, int end, bool chain, ReadOnlyMemory<byte> parent, bool hasParent, int slot, CancellationToken ct,
        bool parentFollows = false)
    {
        var request = new StatusListRequest(batch.Results, start, end - start, _options.InlineCompletions);
        var connection = await ConnectionAsync(slot, ct).ConfigureAwait(false);
        if (connection is null)
        {
            request.Fail(KvStatus.Unavailable);
            return;
        }
        bool trailer = (connection.Features & ProtocolFeatures.CrcTrailer) != 0 && !batch.HasGivenCrcs;
        bool valueCrc = !trailer && (connection.Features & ProtocolFeatures.ValueCrc) != 0;
        if (valueCrc) batch.ComputeCrcs(start, end);
        var versions = connection.Versions ? batch.Versions : null;
        var meta = PutMeta(batch, start, end, parent.Span, hasParent, valueCrc, versions);
        var flags = (chain ? FrameFlags.Chain : 0) | (hasParent ? FrameFlags.ChainParent : 0) | (valueCrc ? FrameFlags.ValueCrc : 0)
            | (trailer ? FrameFlags.CrcTrailer : 0) | (versions is null ? 0 : FrameFlags.Version) | (batch.TtlSeconds is not null ? FrameFlags.Ttl : 0)
            | (parentFollows && hasParent && (connection.Features & ProtocolFeatures.LateParent) != 0 ? FrameFlags.ParentFollows : 0);
        await SendAndWaitAsync(connection, request, Opcode.Put, flags, meta, meta.Length, batch.Values, start, end, ct).ConfigureAwait(false);
    }

    /// <summary>PUT metadata; per entry the key, then its CRC (<paramref name="valueCrc"/>), then its version (<paramref name="versions"/>); the TTL last.</summary>
    private static byte[] PutMeta(PutBatch batch, int start, int end, ReadOnlySpan<byte> parent, bool hasParent, bool valueCrc, long[]? versions)
    {
        int size = PutRequest.PrefixSize(parent, hasParent) + PutRequest.SuffixSize(batch.TtlSeconds is not null);
        for (int i = start; i < end; i++) size += PutRequest.EntrySize(batch.Keys[i].Length, valueCrc, versions is not null);
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, parent, hasParent, end - start);
        for (int i = start; i < end; i++)
            PutRequest.WriteEntry(ref w, batch.Keys[i].Span, batch.Values[i].Length, valueCrc ? batch.Crcs![i] : null, versions?[i]);
        if (batch.TtlSeconds is { } ttl) PutRequest.WriteTtl(ref w, ttl);
        return meta;
    }

    /// <summary>A GET; one whose destinations hold at least twice <see cref="KvStoreOptions.StripeBytes"/> is striped over free connections (<see cref="StripedAsync"/>).</summary>
    public Task GetAsync(GetBatch batch, int start, int end, CancellationToken ct)
    {
        if (!WorthStriping(end - start, GetBytes(batch, start, end))) return GetRunAsync(batch, start, end, AnySlot, ct);
        return StripedAsync(start, end, i => batch.Destinations[i].Capacity, (s, e, slot) => GetRunAsync(batch, s, e, slot, ct));
    }

    /// <summary>The destinations' bytes; -1 when one is allocated on arrival (its size unknown: such a batch goes whole).</summary>
    private static long GetBytes(GetBatch batch, int start, int end)
    {
        long bytes = 0;
        for (int i = start; i < end; i++)
        {
            if (batch.Destinations[i].Allocate) return -1;
            bytes += batch.Destinations[i].Capacity;
        }
        return bytes;
    }

    private static long PutBytes(PutBatch batch, int start, int end)
    {
        long bytes = 0;
        for (int i = start; i < end; i++) bytes += batch.Values[i].Length;
        return bytes;
    }

    /// <summary>Whether a batch of <paramref name="keys"/> carrying <paramref name="bytes"/> may be striped; checked before anything is allocated for it.</summary>
    private bool WorthStriping(int keys, long bytes)
        => _options.StripeBytes > 0 && _connections.Length > 1 && keys > 1 && bytes >= 2 * _options.StripeBytes;

    private async Task GetRunAsync(GetBatch batch, int start, int end, int slot, CancellationToken ct)
    {
        var meta = KeyBatchMeta(batch.Keys, start, end);
        await RunAsync(new GetRequest(batch, start, end - start, _options.InlineCompletions, Check, Address), Opcode.Get, FrameFlags.None, meta, meta.Length, null, 0, 0, ct, slot).ConfigureAwait(false);
    }

    public async Task KeyOpAsync(Opcode op, IReadOnlyList<ReadOnlyMemory<byte>> keys, int start, int end, KvStatus[] results, CancellationToken ct)
    {
        var meta = KeyBatchMeta(keys, start, end);
        await RunAsync(new StatusListRequest(results, start, end - start, _options.InlineCompletions), op, FrameFlags.None, meta, meta.Length, null, 0, 0, ct).ConfigureAwait(false);
    }

    public async Task<List<KeyValuePair<string, long>>> StatsAsync(CancellationToken ct)
        => StatsReply.Read(await CallAsync(Opcode.Stats, [], ct).ConfigureAwait(false));

    public async Task PingAsync(CancellationToken ct) => await CallAsync(Opcode.Ping, [], ct).ConfigureAwait(false);

    public bool SupportsTtl { get; }

    public Task<byte[]> KeyRequestAsync(Opcode op, byte[] meta, CancellationToken ct) => CallAsync(op, meta, ct);

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
