using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Channels;
using Kvasir.Protocol.Transfer;
using Kvasir.Transfer.Internal;

namespace Kvasir.Transfer;

/// <summary>
/// A point-to-point transfer engine (docs/transfer.md): moves bytes straight from registered memory
/// in one engine into registered memory in another over <c>ncpus × nconn_per_cpu</c> TCP lanes per
/// connection, for a prefill engine handing KV blocks to a decode engine. One-sided calls
/// (<see cref="Write(int,int,long,long,ReadOnlySpan{byte},ReadOnlySpan{byte})"/>, <see cref="Read"/>)
/// use advertisements the target made; two-sided calls (<see cref="RegisterKv(int,Memory{byte})"/>,
/// <see cref="SendKv"/>, <see cref="RecvKv"/>) are built on them. UCCL P2P's <c>ptr</c> is a region id
/// plus an offset here (<see cref="RegionAddress"/> gives the base). Every failure is a
/// <see cref="TransferException"/> with a code and a one-line reason; a failed transfer is never
/// reported complete, and a lost peer fails only its own connection's transfers. Thread-safe.
/// </summary>
public sealed class TransferEngine : IDisposable
{
    private readonly EngineCore _core;
    private readonly Listener _listener;
    private readonly IPAddress _advertised;
    private int _nextKvId;
    private int _disposed;

    private TransferEngine(TransferEngineOptions options)
    {
        options.Validate();
        try { _core = new EngineCore(options); }
        catch (FormatException e) { throw new TransferException(TransferError.InvalidArgument, $"AuthKey: {e.Message}"); }
        var (listen, advertised) = ResolveHost(options.Host);
        _listener = new Listener(_core, listen, options.Port);
        _advertised = advertised;
    }

    /// <summary>Starts an engine listening as <paramref name="options"/> say (defaults: 127.0.0.1, an ephemeral port, 1 × 2 lanes, no key).</summary>
    public static TransferEngine Start(TransferEngineOptions? options = null) => new(options ?? new TransferEngineOptions());

    public TransferEngineOptions Options => _core.Options;

    /// <summary>The port this engine listens on.</summary>
    public int Port => _listener.Port;

    /// <summary>The address <see cref="GetMetadata"/> carries.</summary>
    public IPAddress Address => _advertised;

    /// <summary>The 40-byte endpoint blob (address, port, engine id) a peer passes to <see cref="AddRemoteEndpointAsync"/>.</summary>
    public byte[] GetMetadata() => new EndpointBlob(_advertised, (ushort)Port, _core.EngineId).ToBytes();

    // ---- connections ----

    /// <summary>Opens a connection of <c>Ncpus × NconnPerCpu</c> lanes (each with HELLO and, with a key, AUTH) and returns its id.</summary>
    public async Task<int> ConnectAsync(string host, int port, CancellationToken ct = default)
    {
        ThrowIfDisposed();
        IPAddress address;
        if (!IPAddress.TryParse(host, out address!))
        {
            try { address = (await Dns.GetHostAddressesAsync(host, ct).ConfigureAwait(false)).First(); }
            catch (Exception e) when (e is SocketException or InvalidOperationException)
            {
                throw new TransferException(TransferError.ConnectFailed, $"cannot resolve host '{host}': {e.Message}");
            }
        }
        if (port is < 1 or > 65535) throw new TransferException(TransferError.InvalidArgument, $"port {port} is outside 1..65535");
        return await ConnectAsync(new IPEndPoint(address, port), expectedEngine: null, ct).ConfigureAwait(false);
    }

    public int Connect(string host, int port) => ConnectAsync(host, port).GetAwaiter().GetResult();

    /// <summary>Connects to the engine an endpoint blob (<see cref="GetMetadata"/>) describes; its engine id must answer.</summary>
    public Task<int> AddRemoteEndpointAsync(ReadOnlyMemory<byte> metadata, CancellationToken ct = default)
    {
        ThrowIfDisposed();
        EndpointBlob endpoint;
        try { endpoint = EndpointBlob.Parse(metadata.Span); }
        catch (FormatException e) { throw new TransferException(TransferError.BadBlob, e.Message); }
        return ConnectAsync(new IPEndPoint(endpoint.Address, endpoint.Port), endpoint.EngineId, ct);
    }

    public int AddRemoteEndpoint(ReadOnlyMemory<byte> metadata) => AddRemoteEndpointAsync(metadata).GetAwaiter().GetResult();

    /// <summary>Waits for the next connection a peer opened (all its lanes joined).</summary>
    public async Task<AcceptedConnection> AcceptAsync(CancellationToken ct = default)
    {
        ThrowIfDisposed();
        try { return await _listener.Accepted.ReadAsync(ct).ConfigureAwait(false); }
        catch (ChannelClosedException) { throw new TransferException(TransferError.Disposed, "the engine was disposed"); }
    }

    /// <summary>Blocking <see cref="AcceptAsync"/>; a <see cref="TransferError.Timeout"/> after <paramref name="timeout"/>.</summary>
    public AcceptedConnection Accept(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try { return AcceptAsync(cts.Token).GetAwaiter().GetResult(); }
        catch (OperationCanceledException) { throw new TransferException(TransferError.Timeout, $"no connection accepted within {timeout.TotalSeconds:0.###} s"); }
    }

    /// <summary>Closes a connection: its transfers in flight fail, its advertisements are withdrawn.</summary>
    public void CloseConnection(int connId) => _core.GetSession(connId).Close("closed by this engine");

    /// <summary>The ids of the open connections.</summary>
    public IReadOnlyCollection<int> Connections => [.. _core.Sessions.Keys];

    /// <summary>Transfers that moved through a same-host target's shared file (one memcpy) instead of the lanes.</summary>
    public long SharedMemoryTransfers => _core.SharedTransfers;

    // ---- regions and advertisements ----

    /// <summary>Registers native memory; the caller keeps it valid until <see cref="Deregister"/> returned (<see cref="NativeRegion"/> enforces that).</summary>
    public int Register(nint address, long length)
    {
        ThrowIfDisposed();
        if (address == 0 || length < 1) throw new TransferException(TransferError.InvalidArgument, $"cannot register {length} bytes at 0x{address:x}");
        return _core.Regions.Add(address, length, default).Id;
    }

    /// <summary>Registers managed memory, pinned until <see cref="Deregister"/>.</summary>
    public unsafe int Register(Memory<byte> memory)
    {
        ThrowIfDisposed();
        if (memory.IsEmpty) throw new TransferException(TransferError.InvalidArgument, "cannot register an empty buffer");
        var pin = memory.Pin();
        return _core.Regions.Add((nint)pin.Pointer, memory.Length, pin).Id;
    }

    /// <summary>
    /// Registers a <see cref="NativeRegion"/> (2 MiB aligned, huge-page advised: the fastest memory for the lanes'
    /// kernel copies, docs/transfer.md § Region memory). The region cannot be disposed until <see cref="Deregister"/>
    /// returned.
    /// </summary>
    public unsafe int Register(NativeRegion region)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(region);
        MemoryHandle pin;
        try { pin = ((IPinnable)region).Pin(0); }
        catch (ObjectDisposedException) { throw new TransferException(TransferError.InvalidArgument, "cannot register a disposed native region"); }
        return _core.Regions.Add((nint)pin.Pointer, region.Length, pin).Id;
    }

    /// <summary>The address of a region's first byte (UCCL's <c>ptr</c> = this + offset).</summary>
    public nint RegionAddress(int regionId) => _core.Regions.Get(regionId).Address;

    /// <summary>
    /// Withdraws every advertisement of the region (later slices get NOT_ADVERTISED), waits for slices
    /// landing in or leaving it (up to the transfer timeout; then the connections still moving its bytes
    /// are closed) and drops it. No byte moves in or out of the region after this returns.
    /// </summary>
    public void Deregister(int regionId)
    {
        if (!_core.Regions.TryRemove(regionId, out var region))
            throw new TransferException(TransferError.UnknownId, $"no registered region {regionId} in this engine");
        if (!Retire(region, _core.Options.TransferTimeout))
            throw new TransferException(TransferError.Timeout, $"region {regionId}: slices still in flight after its connections were closed; its memory stays pinned");
    }

    /// <summary>
    /// Offers <c>[offset, offset+length)</c> of a region to one connection and returns the advertisement
    /// blob (64 bytes) for the peer. The blob holds a random token: only that connection, with that blob,
    /// can write or read the window.
    /// </summary>
    /// <remarks>A connection keeps its <see cref="Advertisements.MaxPerConnection"/> (65,536) most recent window advertisements; a transfer naming an older one is refused NotAdvertised.</remarks>
    public byte[] Advertise(int connId, int regionId, long offset, long length)
    {
        var session = _core.GetSession(connId);
        var region = _core.Regions.Get(regionId);
        Initiator.CheckLocalRange(region, offset, length);
        var a = _core.Adverts.Add(connId, region, offset, length, window: true);
        return new AdvertisementBlob(_core.EngineId, a.Id, a.Token, (ulong)length, (ulong)(region.Address + (nint)offset)).ToBytes();
    }

    /// <summary>Advertisements this engine holds (windows and kv buffers), for tests.</summary>
    internal int AdvertisementCount => _core.Adverts.Count;

    // ---- one-sided transfers ----

    /// <summary>
    /// Writes <c>[offset, offset+length)</c> of a local region into the start of the advertised window; returns
    /// when every slice was acknowledged. A notification, when given, reaches the target once all bytes landed.
    /// </summary>
    public void Write(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement, ReadOnlySpan<byte> notification = default) =>
        StartWriteOp(connId, regionId, offset, length, advertisement, notification).Task.GetAwaiter().GetResult();

    public Task WriteAsync(int connId, int regionId, long offset, long length, ReadOnlyMemory<byte> advertisement, ReadOnlyMemory<byte> notification = default) =>
        StartWriteOp(connId, regionId, offset, length, advertisement.Span, notification.Span).Task;

    /// <summary>Starts a write and returns its transfer id at once; follow it with <see cref="Poll"/> or <see cref="WaitAsync"/>.</summary>
    public ulong StartWrite(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement, ReadOnlySpan<byte> notification = default) =>
        Track(StartWriteOp(connId, regionId, offset, length, advertisement, notification));

    /// <summary>Fills <c>[offset, offset+length)</c> of a local region from the start of the advertised window.</summary>
    public void Read(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement) =>
        StartReadOp(connId, regionId, offset, length, advertisement).Task.GetAwaiter().GetResult();

    public Task ReadAsync(int connId, int regionId, long offset, long length, ReadOnlyMemory<byte> advertisement) =>
        StartReadOp(connId, regionId, offset, length, advertisement.Span).Task;

    public ulong StartRead(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement) =>
        Track(StartReadOp(connId, regionId, offset, length, advertisement));

    /// <summary>Many writes, all in flight together; returns when all completed, or throws the first failure once all ended.</summary>
    public Task WriteVectorAsync(int connId, IReadOnlyList<TransferItem> items) =>
        WhenAllAsync([.. items.Select(i => StartWriteOp(connId, i.RegionId, i.Offset, i.Length, i.Advertisement.Span, i.Notification.Span).Task)]);

    public void WriteVector(int connId, IReadOnlyList<TransferItem> items) => WriteVectorAsync(connId, items).GetAwaiter().GetResult();

    public Task ReadVectorAsync(int connId, IReadOnlyList<TransferItem> items) =>
        WhenAllAsync([.. items.Select(i => StartReadOp(connId, i.RegionId, i.Offset, i.Length, i.Advertisement.Span).Task)]);

    public void ReadVector(int connId, IReadOnlyList<TransferItem> items) => ReadVectorAsync(connId, items).GetAwaiter().GetResult();

    /// <summary>True once the transfer completed; false while in flight; throws its <see cref="TransferException"/> once it failed.</summary>
    public bool Poll(ulong transferId) => _core.Transfers.Poll(transferId);

    /// <summary>Waits for a transfer started with <see cref="StartWrite"/> or <see cref="StartRead"/>.</summary>
    public Task WaitAsync(ulong transferId) => _core.Transfers.Take(transferId).Task;

    // ---- notifications ----

    /// <summary>Sends a notification (0..64 KiB, opaque) the peer finds in its <see cref="GetNotifications"/>.</summary>
    public Task SendNotificationAsync(int connId, ReadOnlyMemory<byte> notification)
    {
        if (notification.Length > TransferLimits.MaxNotificationBytes)
            throw new TransferException(TransferError.TooLarge, $"a notification is at most {TransferLimits.MaxNotificationBytes} bytes, not {notification.Length}");
        return Initiator.StartControl(_core, _core.GetSession(connId), TransferOpcode.Notify, "notification", notification.Span).Task;
    }

    public void SendNotification(int connId, ReadOnlySpan<byte> notification) =>
        SendNotificationAsync(connId, notification.ToArray()).GetAwaiter().GetResult();

    /// <summary>Returns and clears the notifications received, in arrival order per connection.</summary>
    public IReadOnlyList<TransferNotification> GetNotifications() => _core.TakeNotifications();

    /// <summary>Completes when a notification is waiting in <see cref="GetNotifications"/>.</summary>
    public Task WaitForNotificationsAsync(CancellationToken ct = default) => _core.NotificationArrived().WaitAsync(ct);

    // ---- per-layer pull (docs/transfer.md § Per-layer pull) ----

    /// <summary>Prefill side: tells the peer that layer group <paramref name="group"/> of request <paramref name="tag"/> is in the advertised buffer.</summary>
    public Task NotifyLayerReadyAsync(int connId, ulong tag, int group)
    {
        if (tag == 0 || group < 0)
            throw new TransferException(TransferError.InvalidArgument, $"a layer-ready note needs a tag >= 1 and a group >= 0 (got tag {tag}, group {group})");
        return SendNotificationAsync(connId, new LayerReadyNote(tag, (uint)group).ToBytes());
    }

    /// <summary>
    /// Decoder side: one read per layer group, each started when the prefill's layer-ready note for
    /// (<paramref name="tag"/>, group index) arrives on the connection, or at once for a note that came before. Every
    /// group's arguments are checked before anything is read. Dispose the pull when done with it.
    /// </summary>
    public LayerPull PullLayers(int connId, ulong tag, IReadOnlyList<LayerGroup> groups)
    {
        if (tag == 0) throw new TransferException(TransferError.InvalidArgument, "a layer pull's tag is at least 1");
        if (groups.Count == 0) throw new TransferException(TransferError.InvalidArgument, "a layer pull needs at least one group");
        var session = _core.GetSession(connId);
        foreach (var g in groups)
        {
            Initiator.CheckLocalRange(_core.Regions.Get(g.RegionId), g.Offset, g.Length);
            Initiator.CheckWindow(Initiator.ParseAdvertisement(session, g.Advertisement.Span), g.RemoteOffset, g.Length, "layer read");
        }
        var pull = new LayerPull(connId, tag, groups,
            g => StartReadOp(connId, g.RegionId, g.Offset, g.Length, g.Advertisement.Span, g.RemoteOffset).Task, _core.RemovePull);
        _core.AddPull(pull);
        if (session.IsClosed) pull.ConnectionClosed(session.ClosedReason!);
        return pull;
    }

    // ---- two-sided send/recv (KVTrans) ----

    /// <summary>
    /// Registers <paramref name="buffer"/> for two-sided messages on a connection and gives it the
    /// connection's next tag (1, 2, … per side: both sides registering in the same order agree on tags);
    /// sends the peer KV_READY for it and returns the kv id once the peer acknowledged it.
    /// </summary>
    public async Task<int> RegisterKvAsync(int connId, Memory<byte> buffer)
    {
        var session = _core.GetSession(connId);
        int regionId = Register(buffer);
        var region = _core.Regions.Get(regionId);
        var advert = _core.Adverts.Add(connId, region, 0, region.Length);
        var kv = new KvBuffer(Interlocked.Increment(ref _nextKvId), session, session.Kv.NextTag(), region, advert);
        session.Kv.AddLocal(kv);
        _core.KvBuffers[kv.Id] = kv;
        await SendKvReadyAsync(kv).ConfigureAwait(false);
        return kv.Id;
    }

    public int RegisterKv(int connId, Memory<byte> buffer) => RegisterKvAsync(connId, buffer).GetAwaiter().GetResult();

    /// <summary>
    /// Sends <paramref name="data"/> as the next message of the kv buffer's tag: waits (up to the transfer
    /// timeout) for the peer's KV_READY with an unused generation, then writes into the peer's buffer.
    /// <paramref name="data"/> is first copied to the start of this side's registered buffer unless it already
    /// starts there (no copy); the buffer must not be in use for a receive on the same tag meanwhile.
    /// Throws <see cref="TransferError.TooLarge"/> when it does not fit either buffer, <see cref="TransferError.Timeout"/>
    /// when the peer is not ready in time, or the write's failure; returns only when the message landed.
    /// </summary>
    public Task SendKvAsync(int kvId, ReadOnlyMemory<byte> data)
    {
        var kv = GetKv(kvId);
        Stage(kv, data.Span);
        return SendStagedAsync(kv, data.Length);
    }

    public void SendKv(int kvId, ReadOnlySpan<byte> data)
    {
        var kv = GetKv(kvId);
        Stage(kv, data);
        SendStagedAsync(kv, data.Length).GetAwaiter().GetResult();
    }

    /// <summary>
    /// Waits (up to the transfer timeout) for a message on the kv buffer's tag and returns its length; its
    /// bytes are at the start of the buffer given to <see cref="RegisterKvAsync"/>. The peer is then told it
    /// may send again (KV_READY, next generation), so copy the bytes out before the peer's next message.
    /// A message longer than <paramref name="maxSize"/> is a <see cref="TransferError.TooLarge"/> (and is dropped).
    /// </summary>
    public async Task<long> RecvKvAsync(int kvId, long maxSize)
    {
        var kv = GetKv(kvId);
        long length = await kv.Session.Kv.TakeReceivedAsync(kv, _core.Options.TransferTimeout).ConfigureAwait(false);
        kv.Session.Kv.NextGeneration(kv);
        await SendKvReadyAsync(kv).ConfigureAwait(false);
        if (length > maxSize)
            throw new TransferException(TransferError.TooLarge, $"the message on tag {kv.Tag} is {length} bytes, more than max size {maxSize}");
        return length;
    }

    public long RecvKv(int kvId, long maxSize) => RecvKvAsync(kvId, maxSize).GetAwaiter().GetResult();

    /// <summary>Forgets a kv buffer: its advertisement is withdrawn and its memory deregistered.</summary>
    public void DeregisterKv(int kvId)
    {
        if (!_core.KvBuffers.TryRemove(kvId, out var kv)) throw new TransferException(TransferError.UnknownId, $"no kv buffer {kvId} in this engine");
        kv.Session.Kv.RemoveLocal(kv);
        _core.Adverts.Remove(kv.Advert.Id);
        Deregister(kv.Region.Id);
    }

    // ---- lifetime ----

    /// <summary>Threads of this engine still running (lanes, handshakes): 0 after <see cref="Dispose"/>.</summary>
    internal int LiveThreadCount => _core.Threads.LiveCount;

    /// <summary>For every lane of a connection, its socket's SO_SNDBUF and SO_RCVBUF as the kernel reports them.</summary>
    internal (int Send, int Receive)[] LaneSocketBuffers(int connId) => [.. _core.GetSession(connId).Lanes.Select(l =>
        ((int)l.Socket.Socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.SendBuffer)!,
         (int)l.Socket.Socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReceiveBuffer)!))];

    /// <summary>For every lane of a connection, whether its descriptor is in blocking mode in the kernel (docs/transfer.md § Threads).</summary>
    internal bool[] LaneDescriptorsBlocking(int connId) => [.. _core.GetSession(connId).Lanes.Select(l => l.Socket.KernelBlocking)];

    /// <summary>Stops listening, closes every connection (their transfers fail) and unpins every region.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _core.Stopping.Cancel();
        _listener.Dispose();
        foreach (var s in _core.Sessions.Values) s.Close("the engine was disposed");
        // Closed sockets wake every lane thread; handshakes end with the stop token. Called from a lane thread, that one is skipped.
        _core.Threads.JoinAll(TimeSpan.FromSeconds(5));
        _core.Transfers.Dispose();
        _core.SharedWindows.Dispose();
        foreach (var region in _core.Regions.All.ToList())
        {
            if (_core.Regions.TryRemove(region.Id, out _)) Retire(region, TimeSpan.FromSeconds(5));   // false leaves it pinned: never freed under a slice
        }
    }

    private async Task<int> ConnectAsync(IPEndPoint endpoint, UInt128? expectedEngine, CancellationToken ct)
    {
        int lanes = _core.Options.LaneCount;
        var sessionId = BinaryPrimitives.ReadUInt128LittleEndian(RandomNumberGenerator.GetBytes(16));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct, _core.Stopping.Token);
        timeout.CancelAfter(_core.Options.HandshakeTimeout);
        // One short-lived thread per lane: connect and handshake are blocking calls (docs/transfer.md § Threads).
        var opening = Enumerable.Range(0, lanes)
            .Select(i => _core.Threads.Run($"kvx connect L{i}", () => Handshake.OpenLane(_core, endpoint, sessionId, i, lanes, timeout.Token))).ToArray();
        try
        {
            await Task.WhenAll(opening).ConfigureAwait(false);
        }
        catch (Exception)
        {
            foreach (var t in opening.Where(t => t.IsCompletedSuccessfully)) t.Result.Reader.Socket.Socket.Dispose();
            var errors = opening.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException).OfType<TransferException>().ToList();
            throw errors.FirstOrDefault(e => e.Code == TransferError.AuthFailed) ?? errors.FirstOrDefault()
                ?? new TransferException(TransferError.ConnectFailed, $"connecting to {endpoint} was cancelled");
        }
        var opened = opening.Select(t => t.Result).ToArray();
        var peer = opened[0].Hello;
        string? problem = opened.Any(o => o.Hello.EngineId != peer.EngineId || o.Hello.MaxSlice != peer.MaxSlice)
            ? "the lanes reached different engines"
            : expectedEngine is { } e && e != peer.EngineId ? $"the engine at {endpoint} is not the one the endpoint blob names" : null;
        if (problem is not null)
        {
            foreach (var o in opened) o.Reader.Socket.Socket.Dispose();
            throw new TransferException(TransferError.ConnectFailed, problem);
        }
        int connId = _core.NextConnId();
        int peerSlice = (int)peer.MaxSlice;
        var session = new Session(_core, connId, peer.EngineId, UInt128.Zero, Math.Min(_core.MaxSlice, peerSlice), Math.Max(_core.MaxSlice, peerSlice),
            [.. opened.Select(o => o.Reader)]);
        _core.Sessions[connId] = session;
        session.Start();
        if (Volatile.Read(ref _disposed) != 0)
        {
            session.Close("the engine was disposed");
            throw new TransferException(TransferError.Disposed, "the engine was disposed");
        }
        return connId;
    }

    private TransferOp StartWriteOp(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement, ReadOnlySpan<byte> notification)
    {
        var session = _core.GetSession(connId);
        var region = _core.Regions.Get(regionId);
        var advert = Initiator.ParseAdvertisement(session, advertisement);
        return Initiator.StartWrite(_core, session, region, offset, length, advert, notification);
    }

    private TransferOp StartReadOp(int connId, int regionId, long offset, long length, ReadOnlySpan<byte> advertisement, long remoteOffset = 0)
    {
        var session = _core.GetSession(connId);
        var region = _core.Regions.Get(regionId);
        var advert = Initiator.ParseAdvertisement(session, advertisement);
        return Initiator.StartRead(_core, session, region, offset, length, advert, remoteOffset);
    }

    private ulong Track(TransferOp op)
    {
        _core.Transfers.Track(op);
        return op.Id;
    }

    private static async Task WhenAllAsync(Task[] tasks)
    {
        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (TransferException)
        {
            throw tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).First();
        }
    }

    private Task SendKvReadyAsync(KvBuffer kv)
    {
        var ready = new KvReady(kv.Tag, kv.Generation, kv.Advert.Id, kv.Advert.Token, (ulong)kv.Region.Length);
        Span<byte> meta = stackalloc byte[KvReady.Size];
        ready.Write(meta);
        return Initiator.StartControl(_core, kv.Session, TransferOpcode.KvReady, $"KV_READY of tag {kv.Tag}", meta).Task;
    }

    private KvBuffer GetKv(int kvId) => _core.KvBuffers.TryGetValue(kvId, out var kv)
        ? kv
        : throw new TransferException(TransferError.UnknownId, $"no kv buffer {kvId} in this engine");

    /// <summary>Puts a message at the start of the kv buffer (no copy when it is already there).</summary>
    private static unsafe void Stage(KvBuffer kv, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) throw new TransferException(TransferError.InvalidArgument, "a two-sided message has at least 1 byte");
        if (data.Length > kv.Region.Length)
            throw new TransferException(TransferError.TooLarge, $"a message of {data.Length} bytes is larger than kv buffer {kv.Id} ({kv.Region.Length} bytes)");
        fixed (byte* p = data)
        {
            if ((nint)p != kv.Region.Address) data.CopyTo(kv.Region.Span(0, data.Length));
        }
    }

    /// <summary>Writes the first <paramref name="length"/> bytes of the kv buffer into the peer's buffer of the same tag, once the peer is ready.</summary>
    private async Task SendStagedAsync(KvBuffer kv, int length)
    {
        var session = kv.Session;
        var ready = await session.Kv.TakePeerReadyAsync(kv.Tag, _core.Options.TransferTimeout).ConfigureAwait(false);
        if ((ulong)length > ready.Capacity)
            throw new TransferException(TransferError.TooLarge, $"a message of {length} bytes does not fit the peer's buffer for tag {kv.Tag} ({ready.Capacity} bytes)", TransferStatus.TooLarge);
        var advert = new AdvertisementBlob(session.PeerEngineId, ready.AdvertId, ready.Token, ready.Capacity, 0);
        await Initiator.StartWrite(_core, session, kv.Region, 0, length, advert, default, kv.Tag, ready.KvGeneration).Task.ConfigureAwait(false);
    }

    /// <summary>Withdraws a region, waits until no slice moves its bytes (closing the connections that still do after <paramref name="wait"/>) and unpins it; false when it stayed busy.</summary>
    private bool Retire(Region region, TimeSpan wait)
    {
        _core.Adverts.WithdrawRegion(region);
        region.Withdraw();
        if (!region.WaitIdle(wait))
        {
            foreach (var s in region.BusySessions()) s.Close($"region {region.Id} was deregistered with slices in flight");
            if (!region.WaitIdle(TimeSpan.FromSeconds(5))) return false;
        }
        region.Unpin();
        return true;
    }

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0) throw new TransferException(TransferError.Disposed, "the engine was disposed");
    }

    /// <summary>Where to listen and what to advertise for the Host option: an address or an interface name.</summary>
    private static (IPAddress Listen, IPAddress Advertised) ResolveHost(string host)
    {
        if (IPAddress.TryParse(host, out var ip))
            return (ip, ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any) ? FirstAddress(null) ?? IPAddress.Loopback : ip);
        var nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == host)
            ?? throw new TransferException(TransferError.InvalidArgument, $"Host '{host}' is neither an IP address nor a network interface of this machine");
        var address = FirstAddress(nic) ?? throw new TransferException(TransferError.InvalidArgument, $"network interface '{host}' has no IP address");
        return (address, address);
    }

    private static IPAddress? FirstAddress(NetworkInterface? nic)
    {
        var addresses = (nic is null ? NetworkInterface.GetAllNetworkInterfaces().Where(n => n.NetworkInterfaceType != NetworkInterfaceType.Loopback) : [nic])
            .SelectMany(n => n.GetIPProperties().UnicastAddresses.Select(u => u.Address)).ToList();
        return addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
            ?? addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetworkV6);
    }
}
