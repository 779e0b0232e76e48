using System.Buffers;
using System.Net.Sockets;
using System.Threading.Channels;
using Kvasir.Net;
using Kvasir.Protocol;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;

namespace Kvasir.Server.Internal;

/// <summary>
/// One client connection. A read loop parses requests in order and serves them (PUT payloads are
/// received straight into arena reservations); replies go through a bounded queue to a
/// <see cref="ReplyWriter"/>, so receiving the next request overlaps sending the previous reply.
/// Any frame-level error is answered with its status, then the connection is closed; nothing a
/// client sends can fault the node or leak arena space.
/// </summary>
internal sealed partial class Connection : ILeaseHolder
{
    private readonly CacheNode _node;
    private readonly TieredStore _store;
    private readonly Socket _socket;
    private BufferedReceiver _rx = null!;   // set by RunAsync, over the socket or, with TLS, over _tls
    private System.Net.Security.SslStream? _tls;
    private readonly Channel<Reply> _replies;
    private readonly CancellationTokenSource _abort = new();
    private readonly CancellationTokenSource _idle;
    private readonly CancellationTokenSource _frame = new();
    private readonly CancellationTokenSource _handshake;
    private CancellationTokenSource? _idleTimer;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _log;
    private long _frameStart;

    /// <summary>Requests whose header was read and whose reply the writer has not taken yet (see NodeCounters.RequestsInFlightPeak).</summary>
    private long _inFlight;

    /// <summary>Keys in the request being served (set by its handler, for the metrics).</summary>
    private int _lastKeys;
    private readonly string _remote;
    private readonly System.Net.IPAddress _address;
    private bool _helloDone;

    /// <summary>Features granted in HELLO (<see cref="ProtocolFeatures"/>).</summary>
    private ulong _features;

    /// <summary>HELLO granted <see cref="ProtocolFeatures.Versions"/>: PUT may carry VERSION, GET replies carry versions.</summary>
    private bool VersionsGranted => (_features & ProtocolFeatures.Versions) != 0;
    private bool _authenticated;
    private byte[]? _serverNonce;
    private ulong _currentRequestId;
    private Opcode _currentOpcode;

    public Connection(CacheNode node, Socket socket)
    {
        _node = node;
        _store = node.Store;
        _socket = socket;
        _socket.NoDelay = true;
        _replies = Channel.CreateBounded<Reply>(new BoundedChannelOptions(node.Options.MaxQueuedReplies)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
            // An idle writer wakes on the read loop's thread: a reply starts on the wire at once, up to the writer's first
            // wait (socket buffer full, or the queue empty again), instead of after a hop through the thread pool.
            AllowSynchronousContinuations = true,
        });
        _idle = CancellationTokenSource.CreateLinkedTokenSource(node.Stopping, _abort.Token);
        _handshake = CancellationTokenSource.CreateLinkedTokenSource(_idle.Token);
        _handshake.CancelAfter(node.Options.HandshakeTimeout);
        _log = node.LoggerFactory.CreateLogger("Kvasir.Connection");
        _remote = socket.RemoteEndPoint?.ToString() ?? "?";
        _address = (socket.RemoteEndPoint as System.Net.IPEndPoint)?.Address ?? System.Net.IPAddress.None;
    }

    /// <summary>Completes when the connection has closed and released everything it held.</summary>
    public Task Completion => _completion.Task;

    private bool AuthRequired => _node.Options.AuthKey is not null;

    /// <summary>HELLO (and AUTH, where the node has a key) done: from here the connection may idle between requests.</summary>
    private bool HandshakeDone => _helloDone && (_authenticated || !AuthRequired);

    public async Task RunAsync()
    {
        var writing = Task.CompletedTask;
        bool closeGracefully = true;
        try
        {
            bool plaintextAtTlsNode = _node.Tls is not null && !await StartTlsAsync().ConfigureAwait(false);
            _rx = _tls is null ? new BufferedReceiver(_socket) : new BufferedReceiver(_tls);
            // A request counts as in flight from its header until the writer takes its reply (before sending a byte of it),
            // so a client that waits for each whole reply never sees 2 here.
            Action taken = () => Interlocked.Decrement(ref _inFlight);
            var writer = _tls is null ? new ReplyWriter(_socket, _store, _node.Counters) { Taken = taken } : new ReplyWriter(_tls, _store, _node.Counters) { Taken = taken };
            writing = Task.Run(() => writer.RunAsync(_replies.Reader, _abort.Token));
            if (plaintextAtTlsNode) await RefusePlaintextAsync().ConfigureAwait(false);
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (ProtocolException ex)
        {
            _node.Counters.ProtocolError();
            _node.Metrics.Request(_currentOpcode, ex.Status, 0, _frameStart == 0 ? 0 : System.Diagnostics.Stopwatch.GetTimestamp() - _frameStart);
            _node.AccessLog?.Write(_remote, _currentOpcode, 0, Admin.NodeMetrics.StatusName(ex.Status), 0);
            if (ex.Status == WireStatus.AuthFailed) _node.Counters.AuthFailure();
            _node.ConnectionWarnings.Warn(_log, $"connection {_remote}: {ex.Status}: {ex.Message}");
            await QueueErrorAsync(ex.Status, ex.Message).ConfigureAwait(false);
        }
        catch (System.Security.Authentication.AuthenticationException ex)
        {
            closeGracefully = false;
            _node.Counters.ProtocolError();
            _node.ConnectionWarnings.Warn(_log, $"connection {_remote}: TLS handshake failed: {TlsReason(ex)}");
        }
        catch (Exception ex) when (IsDisconnect(ex))
        {
            closeGracefully = false;
            // One line per connection error: a frame timeout is logged by Abort, an abort (lease
            // expiry) was logged when it happened, a stopping node cuts connections on purpose.
            // A frame timeout may mean the client stopped reading: the writer could be stuck in a send
            // that never completes, so cut the socket rather than wait for it.
            bool stopping = _abort.IsCancellationRequested || _node.Stopping.IsCancellationRequested;
            if (_frame.IsCancellationRequested) Abort($"frame timeout: a frame did not arrive whole within {_node.Options.FrameTimeout.TotalSeconds:0.#} s");
            else if (!stopping && !HandshakeDone && _handshake.IsCancellationRequested)
                Abort($"handshake timeout: no HELLO{(AuthRequired ? " and AUTH" : "")} within {_node.Options.HandshakeTimeout.TotalSeconds:0.#} s");
            else if (!stopping && _idleTimer is { IsCancellationRequested: true })
                Abort($"idle timeout: no request for {_node.Options.IdleTimeout!.Value.TotalSeconds:0.#} s");
            else if (!_abort.IsCancellationRequested && !_node.Stopping.IsCancellationRequested)
                _log.LogInformation("connection {Remote} closed by an error: {Reason}", _remote, ex.Message);
        }
        catch (Exception ex)
        {
            _log.LogError(ex, "connection {Remote}: internal error serving {Op}", _remote, _currentOpcode);
            await QueueErrorAsync(WireStatus.InternalError, "internal error").ConfigureAwait(false);
        }
        finally
        {
            _replies.Writer.TryComplete();
            await writing.ConfigureAwait(false);
            ReleaseAllShm();
            await CloseSocketAsync(closeGracefully).ConfigureAwait(false);
            _handshake.Dispose();
            _idleTimer?.Dispose();
            _idle.Dispose();
            _frame.Dispose();   // its timer; Abort tolerates the disposed _abort source as well
            _completion.TrySetResult();
        }
    }

    /// <summary>Cuts the connection at once: pending socket calls fail and their leases are released.</summary>
    public void Abort(string reason)
    {
        if (_abort.IsCancellationRequested) return;
        if (_node.Stopping.IsCancellationRequested) _log.LogDebug("connection {Remote} aborted: {Reason}", _remote, reason);
        else _node.ConnectionWarnings.Warn(_log, $"connection {_remote} cut: {reason}");
        try { _abort.Cancel(); } catch (ObjectDisposedException) { }
        try { _socket.Dispose(); } catch (ObjectDisposedException) { }
    }

    /// <summary>A lease of ours outlived the lease timeout: the client stopped reading. Cut it off; the writer then releases.</summary>
    public void OnLeaseExpired() => Abort("lease expired: client is not reading its replies");

    /// <summary>
    /// On a TLS node: waits (under the handshake timeout) for the client's first byte. A TLS handshake record
    /// starts the server handshake and sets <see cref="_tls"/>; anything else is a plaintext client, for which
    /// this returns false so it can be answered in plaintext with why it is refused.
    /// </summary>
    private async Task<bool> StartTlsAsync()
    {
        var first = new byte[1];
        int n = await _socket.ReceiveAsync(first, SocketFlags.Peek, _handshake.Token).ConfigureAwait(false);
        if (n == 0) throw new EndOfStreamException("closed before the TLS handshake");
        if (first[0] != TlsServerSettings.HandshakeRecord) return false;
        try
        {
            _tls = await _node.Tls!.AuthenticateAsync(_socket, _handshake.Token).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            // The client gave up on the handshake (it did not trust our certificate, or sent garbage): one
            // rate-limited warning like any other refused handshake, not an error per connection.
            throw new System.Security.Authentication.AuthenticationException(ex.Message, ex);
        }
        return true;
    }

    /// <summary>A plaintext client reached a TLS node: its first header is answered (so the client matches the reply to its request) with the reason, then the connection closes.</summary>
    private async Task RefusePlaintextAsync()
    {
        var headerBuffer = new byte[ProtocolLimits.HeaderSize];
        await _rx.ReadRequiredAsync(headerBuffer, _handshake.Token).ConfigureAwait(false);
        _currentRequestId = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(headerBuffer.AsSpan(8));
        _currentOpcode = (Opcode)headerBuffer[5];
        throw new ProtocolException(WireStatus.BadState,
            "this node requires TLS: connect with TLS (.NET KvStoreOptions.Tls, CLI --tls-ca, Python tls_ca) or use a node without --tls-cert");
    }

    private static string TlsReason(Exception ex) =>
        ex.InnerException is { } inner && inner.Message != ex.Message ? $"{ex.Message} ({inner.Message})" : ex.Message;

    private async Task ReadLoopAsync()
    {
        var headerBuffer = new byte[ProtocolLimits.HeaderSize];
        while (true)
        {
            // Between requests a connection waits as long as it likes (unless an idle timeout is set), but not before
            // its handshake is done; once a header's first byte is here, the whole frame has the frame timeout.
            if (!await _rx.ReadExactAsync(headerBuffer.AsMemory(0, 1), WaitToken()).ConfigureAwait(false))
                return;
            _frame.CancelAfter(_node.Options.FrameTimeout);
            await _rx.ReadRequiredAsync(headerBuffer.AsMemory(1), _frame.Token).ConfigureAwait(false);
            // Taken from the raw bytes first, so an error about this header still names its request.
            _currentRequestId = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(headerBuffer.AsSpan(8));
            _currentOpcode = (Opcode)headerBuffer[5];
            if (!_helloDone && _tls is null && headerBuffer[0] == TlsServerSettings.HandshakeRecord && headerBuffer[1] == 3)
                throw new ProtocolException(WireStatus.BadFrame, "a TLS handshake arrived but this node does not speak TLS: start it with --tls-cert/--tls-key, or connect without TLS");
            var header = FrameHeader.Read(headerBuffer);
            CheckRequestHeader(header);
            _node.Counters.InFlight(Interlocked.Increment(ref _inFlight));
            var token = _frame.Token;
            // Large metadata counts against the node-wide budget (waiting for room under the frame timeout) and comes
            // from a pool that keeps few arrays; small metadata is pooled as usual.
            bool large = header.MetaLength > MetaBudget.PooledBytes;
            if (large) await _node.MetaBudget.AcquireAsync(_address, header.MetaLength, token).ConfigureAwait(false);
            var pool = large ? _node.LargeMetaPool : ArrayPool<byte>.Shared;
            byte[] meta = pool.Rent(header.MetaLength);
            try
            {
                await _rx.ReadRequiredAsync(meta.AsMemory(0, header.MetaLength), token).ConfigureAwait(false);
                _node.Counters.In(header.Opcode, ProtocolLimits.HeaderSize + header.MetaLength);
                _frameStart = System.Diagnostics.Stopwatch.GetTimestamp();
                await DispatchAsync(header, meta, token).ConfigureAwait(false);
                long elapsed = System.Diagnostics.Stopwatch.GetTimestamp() - _frameStart;
                _node.Metrics.Request(header.Opcode, WireStatus.Ok, _lastKeys, elapsed);
                _node.AccessLog?.Write(_remote, header.Opcode, _lastKeys, "ok", elapsed * 1_000_000 / System.Diagnostics.Stopwatch.Frequency);
            }
            finally
            {
                pool.Return(meta);
                if (large) _node.MetaBudget.Release(_address, header.MetaLength);
            }
            if (!_frame.TryReset())
                throw new OperationCanceledException("frame timeout");
        }
    }

    /// <summary>What the wait for the next request's first byte may be cancelled by: the handshake deadline, the idle timeout, or only the connection's end.</summary>
    private CancellationToken WaitToken()
    {
        if (!HandshakeDone) return _handshake.Token;
        if (_node.Options.IdleTimeout is not { } idle) return _idle.Token;
        if (_idleTimer is null || !_idleTimer.TryReset())
        {
            _idleTimer?.Dispose();
            _idleTimer = CancellationTokenSource.CreateLinkedTokenSource(_idle.Token);
        }
        _idleTimer.CancelAfter(idle);
        return _idleTimer.Token;
    }

    private void CheckRequestHeader(in FrameHeader h)
    {
        if (h.IsReply)
            throw new ProtocolException(WireStatus.BadFrame, "a reply frame was sent to the node");
        if (!Opcodes.IsDefined((byte)h.Opcode))
            throw new ProtocolException(WireStatus.UnknownOpcode, $"unknown opcode 0x{(byte)h.Opcode:x2}");
        var ttl = (_features & ProtocolFeatures.Ttl) != 0 ? FrameFlags.Ttl : FrameFlags.None;
        bool arenaProof = (_features & ProtocolFeatures.ArenaProof) != 0;
        var allowed = h.Opcode switch
        {
            Opcode.Put => FrameFlags.Chain | FrameFlags.ChainParent | ttl
                | ((_features & ProtocolFeatures.LateParent) != 0 ? FrameFlags.ParentFollows : FrameFlags.None)
                | ((_features & ProtocolFeatures.ValueCrc) != 0 ? FrameFlags.ValueCrc : FrameFlags.None)
                | ((_features & ProtocolFeatures.CrcTrailer) != 0 ? FrameFlags.CrcTrailer : FrameFlags.None)
                | (VersionsGranted ? FrameFlags.Version : FrameFlags.None),
            Opcode.Alloc => ttl | (arenaProof ? FrameFlags.Mapped : FrameFlags.None),
            Opcode.Commit => (arenaProof ? FrameFlags.CommitCrc : FrameFlags.None)
                | ((_features & ProtocolFeatures.CommitChain) != 0 ? FrameFlags.Chain | FrameFlags.ChainParent : FrameFlags.None),
            _ => FrameFlags.None,
        };
        if ((h.Flags & ~allowed) != 0)
            throw new ProtocolException(WireStatus.BadFrame, h.Opcode != Opcode.Put ? $"flags 0x{(ushort)h.Flags:x4} are not valid for {h.Opcode}"
                : (h.Flags & ~allowed & FrameFlags.Version) != 0 ? "PUT flag VERSION (0x0010) needs the versions feature (HELLO bit 0x4) granted first"
                : (h.Flags & ~allowed & FrameFlags.CrcTrailer) != 0 ? "PUT flag CRC_TRAILER (0x0080) needs feature CRC_TRAILER (HELLO bit 0x10) granted first"
                : (h.Flags & ~allowed & FrameFlags.ParentFollows) != 0 ? "PUT flag PARENT_FOLLOWS (0x0100) needs feature LATE_PARENT (HELLO bit 0x40) granted first"
                : $"flags 0x{(ushort)h.Flags:x4} are not valid for {h.Opcode}");
        if ((h.Flags & FrameFlags.ChainParent) != 0 && (h.Flags & FrameFlags.Chain) == 0)
            throw new ProtocolException(WireStatus.BadFrame, "ChainParent without Chain");
        if ((h.Flags & FrameFlags.ParentFollows) != 0 && (h.Flags & FrameFlags.ChainParent) == 0)
            throw new ProtocolException(WireStatus.BadFrame, "PUT flag PARENT_FOLLOWS (0x0100) without CHAIN_PARENT: it says when the parent key may come");
        if (h.Status != WireStatus.Ok)
            throw new ProtocolException(WireStatus.BadFrame, "a request carries a non-zero status");
        if (h.MetaLength > _node.Options.MaxMetaBytes)
            throw new ProtocolException(WireStatus.FrameTooLarge, $"metadata of {h.MetaLength} bytes exceeds the limit of {_node.Options.MaxMetaBytes}");
        if (h.Opcode != Opcode.Put && h.PayloadLength != 0)
            throw new ProtocolException(WireStatus.BadFrame, $"{h.Opcode} carries no payload");
        if (!_helloDone && h.Opcode != Opcode.Hello)
            throw new ProtocolException(WireStatus.HelloRequired, "the first frame must be HELLO");
        if (_helloDone && h.Opcode == Opcode.Hello)
            throw new ProtocolException(WireStatus.BadState, "HELLO was already exchanged");
        if (_helloDone && AuthRequired && !_authenticated && h.Opcode != Opcode.Auth)
            throw new ProtocolException(WireStatus.AuthRequired, "this node requires AUTH before any other request");
        if (h.Opcode == Opcode.Auth && (!AuthRequired || _authenticated))
            throw new ProtocolException(WireStatus.BadState, AuthRequired ? "already authenticated" : "this node has no auth key");
    }

    private async Task QueueErrorAsync(WireStatus status, string message)
    {
        var meta = ErrorReply.Encode(message);
        var buffer = ArrayPool<byte>.Shared.Rent(ProtocolLimits.HeaderSize + meta.Length);
        new FrameHeader(_currentOpcode, FrameFlags.Reply, _currentRequestId, status, meta.Length, 0).Write(buffer);
        meta.CopyTo(buffer.AsSpan(ProtocolLimits.HeaderSize));
        try
        {
            await _replies.Writer.WriteAsync(Reply.Create(buffer, ProtocolLimits.HeaderSize + meta.Length, closeAfter: true), _abort.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// After an error reply: half-close, then read and drop what the client still sends for a short
    /// while, so the close does not turn into a reset that destroys the reply before it is read.
    /// </summary>
    private async Task CloseSocketAsync(bool graceful)
    {
        if (graceful && !_abort.IsCancellationRequested)
        {
            try
            {
                if (_tls is not null) await _tls.ShutdownAsync().ConfigureAwait(false);   // close_notify, then the TCP half-close
                _socket.Shutdown(SocketShutdown.Send);
                using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                var sink = new byte[16 * 1024];
                long drained = 0;
                while (drained < (8 << 20))
                {
                    int n = await _socket.ReceiveAsync(sink, SocketFlags.None, linger.Token).ConfigureAwait(false);
                    if (n == 0) break;
                    drained += n;
                }
            }
            catch (Exception ex) when (IsDisconnect(ex)) { }
        }
        try { _socket.Dispose(); } catch (ObjectDisposedException) { }
        if (_tls is not null) await _tls.DisposeAsync().ConfigureAwait(false);
    }

    private static bool IsDisconnect(Exception ex) =>
        ex is SocketException or ObjectDisposedException or EndOfStreamException or IOException or OperationCanceledException;
}
