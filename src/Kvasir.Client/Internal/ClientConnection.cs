using System.Buffers;
using System.Collections.Concurrent;
using System.Net.Sockets;
using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// One TCP connection to a node, carrying many requests in flight. Senders take turns writing whole
/// frames (header, metadata, then the value pieces straight from caller memory, gathered into as
/// few sendmsg calls as possible by a <see cref="FrameSender"/>); one reader loop
/// matches replies to requests by id and receives GET payloads straight into caller buffers.
/// When the connection breaks every request still waiting fails with Unavailable.
/// </summary>
internal sealed class ClientConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly System.Net.Security.SslStream? _tls;
    private readonly BufferedReceiver _rx;
    private readonly ConcurrentDictionary<ulong, PendingRequest> _pending = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _closed = new();
    private readonly FrameSender _sender;
    private long _nextId;
    private int _outstanding;
    private Task _readLoop = Task.CompletedTask;
    private volatile bool _broken;
    private string? _closeReason;

    /// <summary>The close reason when the peer answered the HELLO in HTTP (an admin port given as the data port).</summary>
    private const string HttpPeer = "the peer answered in HTTP";

    private ClientConnection(Socket socket, System.Net.Security.SslStream? tls)
    {
        _socket = socket;
        _tls = tls;
        _rx = tls is null ? new BufferedReceiver(socket) : new BufferedReceiver(tls);
        _sender = tls is null ? new FrameSender(new GatherSender(socket)) : new FrameSender(new GatherSender(tls));
    }

    public bool IsBroken => _broken;

    /// <summary>Requests sent (or being sent) whose reply has not been fully read yet; a hint for choosing a connection.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    public HelloReply Hello { get; private set; } = null!;

    /// <summary>The node granted value versions (HELLO bit 0x4): PUT may carry VERSION, GET replies carry versions.</summary>
    public bool Versions => (Hello.Features & ValueVersions.Feature) != 0;

    /// <summary>
    /// Opens a connection (with <paramref name="tls"/>, a TLS session over it) and completes HELLO and, when
    /// the node asks for it, mutual AUTH.
    /// </summary>
    public static async Task<ClientConnection> OpenAsync(string host, int port, byte[]? authKey, TlsClientSettings? tls, string clientName, TimeSpan timeout,
        CancellationToken ct, ulong features = 0)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        System.Net.Security.SslStream? stream = null;
        try
        {
            await socket.ConnectAsync(host, port, cts.Token).ConfigureAwait(false);
            if (tls is not null) stream = await tls.AuthenticateAsync(socket, host, cts.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or System.Security.Authentication.AuthenticationException && !ct.IsCancellationRequested)
        {
            socket.Dispose();
            throw new KvasirException(ex switch
            {
                SocketException { SocketErrorCode: SocketError.ConnectionRefused } =>
                    $"cannot connect to {host}:{port}: connection refused: is a node running at {host}:{port}? (kvasir serve prints its data port after 'serving on')",
                SocketException se => $"cannot connect to {host}:{port}: {se.SocketErrorCode}",
                System.Security.Authentication.AuthenticationException ae => $"TLS to {host}:{port}: {ae.Message}",
                _ => $"cannot connect to {host}:{port}: {(socket.Connected ? "TLS handshake timed out" : "timed out")}",
            }, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var connection = new ClientConnection(socket, stream);
        try
        {
            connection._readLoop = Task.Run(connection.ReadLoopAsync);
            try
            {
                await connection.HandshakeAsync(authKey, clientName, features, cts.Token, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
            {
                throw new KvasirException($"{host}:{port} did not complete HELLO/AUTH within {timeout.TotalSeconds:0.###} s", ex);
            }
            catch (KvasirException ex) when (connection._closeReason == HttpPeer)
            {
                throw new KvasirException($"{host}:{port} answered in HTTP: it is a node's admin port, not its data port; use the port kvasir serve printed after 'serving on' (the admin port is the one after 'admin on')", ex);
            }
            catch (KvasirException ex) when (connection._closeReason is { } reason && tls is not null)
            {
                // Over TLS 1.3 a node refuses a missing or untrusted client certificate after the client's side of the
                // handshake finished: the refusal shows up as the connection closing on the first read.
                throw new KvasirException($"{host}:{port} closed the TLS connection before HELLO completed ({reason}){(tls.HasClientCertificate ? "" : "; does the node require a client certificate (--tls-cert/--tls-key)?")}", ex);
            }
            return connection;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The features the node granted in HELLO (<see cref="ProtocolFeatures"/>).</summary>
    public ulong Features { get; private set; }

    private async Task HandshakeAsync(byte[]? authKey, string clientName, ulong features, CancellationToken token, CancellationToken callerToken)
    {
        // TTL and versions are always asked for: a PUT without them is unchanged, a GET reply's versions are read only when
        // granted, and a node without TTL refuses PutOptions.Ttl
        var hello = new HelloRequest(ProtocolLimits.Version, ProtocolLimits.Version,
            features | ProtocolFeatures.Ttl | ProtocolFeatures.Versions, clientName);
        var meta = new byte[hello.Size];
        var w = new MetaWriter(meta);
        hello.Write(ref w);
        var reply = await CallAsync(Opcode.Hello, meta, token, callerToken).ConfigureAwait(false);
        Hello = HelloReply.Read(reply);
        Features = Hello.Features & features;   // a bit the client did not ask for is never used
        if (Hello.AuthRequired && authKey is null)
            throw new KvasirAuthException("the node requires an auth key and none is configured");
        if (!Hello.AuthRequired && authKey is not null)
            throw new KvasirAuthException("an auth key is configured but the node does not authenticate; refusing an unauthenticated node");
        if (authKey is null) return;
        var clientNonce = AuthHandshake.NewNonce();
        var auth = new AuthRequest(clientNonce, AuthHandshake.ClientProof(authKey, Hello.ServerNonce, clientNonce));
        meta = new byte[AuthRequest.Size];
        w = new MetaWriter(meta);
        auth.Write(ref w);
        var authReply = AuthReply.Read(await CallAsync(Opcode.Auth, meta, token, callerToken).ConfigureAwait(false));
        if (!AuthHandshake.ProofsEqual(AuthHandshake.ServerProof(authKey, Hello.ServerNonce, clientNonce), authReply.ServerProof))
            throw new KvasirAuthException("the node could not prove it holds the auth key");
    }

    /// <summary>A request whose reply metadata the caller parses (HELLO, AUTH, PING, STATS).</summary>
    public async Task<byte[]> CallAsync(Opcode op, byte[] meta, CancellationToken token, CancellationToken callerToken = default)
    {
        var request = new MetaRequest();
        await SendAsync(request, op, FrameFlags.None, meta, meta.Length, null, 0, 0, token).ConfigureAwait(false);
        await WaitAsync(request, Timeout.InfiniteTimeSpan, token).ConfigureAwait(false);
        if (request.FrameError is { } error)
        {
            if (error.Status == WireStatus.AuthFailed) throw new KvasirAuthException($"the node refused authentication: {error.Message}");
            throw new KvasirException($"{op} failed: {error.Status}: {error.Message}");
        }
        if (request.Status != KvStatus.Ok)
        {
            callerToken.ThrowIfCancellationRequested();
            throw new KvasirException($"{op} failed: {request.Status}");
        }
        return request.Meta;
    }

    /// <summary>
    /// Sends one frame: header, <paramref name="metaLength"/> bytes of <paramref name="meta"/>, then the
    /// value pieces of keys [start, end). With <see cref="FrameFlags.CrcTrailer"/> in <paramref name="flags"/> each value is
    /// checksummed as it is sent and followed by its CRC-32C. If sending fails or is cancelled part-way the connection is
    /// cut (the stream is out of step), and the request fails with Unavailable.
    /// </summary>
    public async Task SendAsync(PendingRequest request, Opcode op, FrameFlags flags, byte[] meta, int metaLength,
        ValueSource[]? values, int start, int end, CancellationToken ct)
    {
        long payload = 0;
        if (values is not null) for (int i = start; i < end; i++) payload += values[i].Length;
        bool trailer = (flags & FrameFlags.CrcTrailer) != 0;
        payload = PutRequest.PayloadLength(payload, end - start, trailer);
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        _pending[id] = request;
        Interlocked.Increment(ref _outstanding);
        if (_broken)
        {
            Forget(id, request, KvStatus.Unavailable);
            return;
        }
        bool locked = false;
        try
        {
            await _sendLock.WaitAsync(ct).ConfigureAwait(false);
            locked = true;
            new FrameHeader(op, flags, id, WireStatus.Ok, metaLength, payload).Write(_sender.BeginFrame(ProtocolLimits.HeaderSize));
            await _sender.AddAsync(meta.AsMemory(0, metaLength), ct).ConfigureAwait(false);
            if (values is not null && trailer)
            {
                for (int i = start; i < end; i++)
                {
                    uint crc = Crc32C.InitialState;
                    for (int p = 0; p < values[i].PieceCount; p++)
                        crc = await _sender.AddChecksummedAsync(values[i].Piece(p), crc, ct).ConfigureAwait(false);
                    await _sender.AddU32Async(Crc32C.Complete(crc), ct).ConfigureAwait(false);
                }
            }
            else if (values is not null)
            {
                for (int i = start; i < end; i++)
                    for (int p = 0; p < values[i].PieceCount; p++)
                        await _sender.AddAsync(values[i].Piece(p), ct).ConfigureAwait(false);
            }
            await _sender.FlushAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            if (locked) Abort();
            Forget(id, request, KvStatus.Unavailable);
            if (ex is OperationCanceledException) ct.ThrowIfCancellationRequested();
        }
        finally
        {
            if (locked) _sendLock.Release();
        }
    }

    /// <summary>
    /// Waits for the reply. On timeout or cancellation the request is abandoned if its reply has not
    /// started arriving; otherwise the connection is cut and the reader is awaited, so that when this
    /// returns nothing writes into the caller's buffers any more. Returns false on timeout.
    /// </summary>
    public async Task<bool> WaitAsync(PendingRequest request, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            await request.Completion.WaitAsync(timeout, ct).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            if (!request.TryAbandon())
            {
                if (request.IsDone && ex is TimeoutException) return true; // the reply won the race
                Abort();
                await request.Completion.ConfigureAwait(false);
            }
            request.MarkAll(KvStatus.Timeout);
            if (ex is OperationCanceledException) throw;
            return false;
        }
    }

    private void Forget(ulong id, PendingRequest request, KvStatus status)
    {
        if (_pending.TryRemove(id, out _)) Interlocked.Decrement(ref _outstanding);
        request.Fail(status);
    }

    private async Task ReadLoopAsync()
    {
        var header = new byte[ProtocolLimits.HeaderSize];
        PendingRequest? current = null;
        try
        {
            while (true)
            {
                if (!await _rx.ReadExactAsync(header, _closed.Token).ConfigureAwait(false))
                {
                    _closeReason = "the node closed the connection";
                    break;
                }
                if (header.AsSpan().StartsWith("HTTP/"u8))
                {
                    _closeReason = HttpPeer;
                    break;
                }
                var h = FrameHeader.Read(header);
                if (!h.IsReply || !_pending.TryRemove(h.RequestId, out current))
                    throw new ProtocolException(WireStatus.BadFrame, $"reply for unknown request {h.RequestId}");
                var meta = ArrayPool<byte>.Shared.Rent(h.MetaLength);
                try
                {
                    await _rx.ReadRequiredAsync(meta.AsMemory(0, h.MetaLength), _closed.Token).ConfigureAwait(false);
                    if (h.Status != WireStatus.Ok)
                    {
                        await _rx.SkipAsync(h.PayloadLength, _closed.Token).ConfigureAwait(false);
                        Interlocked.Decrement(ref _outstanding);
                        current.Fail(KvStatus.ProtocolError, (h.Status, ErrorReply.Read(meta.AsSpan(0, h.MetaLength))));
                    }
                    else if (current.TryBeginReceive())
                    {
                        await current.ReceiveAsync(h, meta.AsMemory(0, h.MetaLength), _rx, _closed.Token).ConfigureAwait(false);
                        // Before completing: with inline completions the caller's next request may choose a connection at once.
                        Interlocked.Decrement(ref _outstanding);
                        current.Complete();
                    }
                    else
                    {
                        await _rx.SkipAsync(h.PayloadLength, _closed.Token).ConfigureAwait(false);
                        Interlocked.Decrement(ref _outstanding);
                        current.Fail(KvStatus.Timeout);
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(meta);
                }
                current = null;
            }
        }
        catch (Exception ex)
        {
            // Socket failure, abort, or a reply that breaks the protocol: the stream cannot be trusted.
            _closeReason = ex.Message;
        }
        finally
        {
            _broken = true;
            current?.Fail(KvStatus.Unavailable);
            foreach (var id in _pending.Keys)
                if (_pending.TryRemove(id, out var pending)) pending.Fail(KvStatus.Unavailable);
            try { _socket.Dispose(); } catch (ObjectDisposedException) { }
            _tls?.Dispose();
        }
    }

    /// <summary>Cuts the connection; the reader fails everything still pending.</summary>
    public void Abort()
    {
        _broken = true;
        try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        try { _socket.Dispose(); } catch (ObjectDisposedException) { }
    }

    public async ValueTask DisposeAsync()
    {
        Abort();
        await _readLoop.ConfigureAwait(false);
    }
}
