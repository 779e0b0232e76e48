using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The target side of connecting: accepts lanes, runs each one's HELLO (and AUTH when the engine has a
/// key) within the handshake timeout, puts joined lanes together by session id and, when all
/// <c>lane_count</c> lanes joined, starts the session and hands it to <c>Accept</c>. A lane that does not
/// fit its session, a request before HELLO or before AUTH, a wrong proof or a bad frame is answered with
/// its status and closed; a session not complete within the handshake timeout is dropped with its lanes.
/// Only the listening socket is asynchronous: an accepted lane's handshake runs with blocking calls on a
/// short-lived thread of its own (at most <see cref="MaxHandshakes"/> at once), so the lane's descriptor stays
/// blocking for its receiver and sender threads (docs/transfer.md § Threads).
/// </summary>
internal sealed class Listener : IDisposable
{
    private readonly EngineCore _core;
    private readonly Socket _socket;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<UInt128, PendingSession> _pending = [];
    private readonly Channel<AcceptedConnection> _accepted = Channel.CreateUnbounded<AcceptedConnection>();
    private readonly SemaphoreSlim _handshakes = new(MaxHandshakes);

    /// <summary>Handshakes in progress at once; further connections wait in the listen backlog.</summary>
    public const int MaxHandshakes = 2 * TransferLimits.MaxLanes;

    private sealed class PendingSession(TransferHelloRequest first, IPEndPoint remote)
    {
        public TransferHelloRequest First { get; } = first;
        public IPEndPoint Remote { get; } = remote;
        public bool[] Reserved { get; } = new bool[first.LaneCount];
        public LaneReader[] Joined { get; } = new LaneReader[first.LaneCount];
        public int JoinedCount { get; set; }
        public int ReservedCount { get; set; }
    }

    public Listener(EngineCore core, IPAddress address, int port)
    {
        _core = core;
        _socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            core.Options.ApplySocketBuffers(_socket);
            _socket.Bind(new IPEndPoint(address, port));
            _socket.Listen(512);
        }
        catch (SocketException e)
        {
            _socket.Dispose();
            throw new TransferException(TransferError.InvalidArgument, $"cannot listen on {address}:{port}: {e.Message}");
        }
        Port = ((IPEndPoint)_socket.LocalEndPoint!).Port;
        _ = Task.Run(AcceptLoopAsync);
    }

    public int Port { get; }

    public ChannelReader<AcceptedConnection> Accepted => _accepted.Reader;

    public void Dispose()
    {
        _stop.Cancel();
        _socket.Dispose();
        _accepted.Writer.TryComplete();
        lock (_pending)
        {
            foreach (var p in _pending.Values) CloseJoined(p);
            _pending.Clear();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket lane;
            try
            {
                await _handshakes.WaitAsync(_stop.Token).ConfigureAwait(false);
                lane = await _socket.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException)   // a connection reset before it was accepted
            {
                _handshakes.Release();
                continue;
            }
            lane.NoDelay = true;
            _core.Threads.Start("kvx handshake", () =>
            {
                try { Handshake(lane); }
                finally { _handshakes.Release(); }
            });
        }
    }

    private void Handshake(Socket lane)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(_core.Options.HandshakeTimeout);
        var watchdog = timeout.Token.Register(lane.Dispose);   // what bounds the blocking calls below
        var reader = new LaneReader(new LaneSocket(lane));
        var header = new byte[TransferLimits.HeaderSize];
        (PendingSession Session, int Index)? claim = null;
        try
        {
            if (!reader.ReadExact(header)) { lane.Dispose(); return; }
            var (hello, helloHeader) = ReadRequest(reader, header);
            if (helloHeader.Opcode != TransferOpcode.Hello)
                throw new RefusedException(helloHeader, TransferStatus.BadSession, "a request before HELLO");
            var request = TransferHelloRequest.Parse(hello);
            if (request.ProtocolVersion != TransferLimits.Version)
                throw new RefusedException(helloHeader, TransferStatus.UnsupportedVersion, $"protocol version {request.ProtocolVersion}");
            var pending = Reserve(request, (IPEndPoint)lane.RemoteEndPoint!, helloHeader);
            claim = (pending, request.LaneIndex);
            var nonce = _core.Key is null ? new byte[TransferLimits.NonceBytes] : AuthHandshake.NewNonce();
            var reply = new TransferHelloReply(_core.Key is not null, (uint)_core.MaxSlice, _core.EngineId, nonce);
            Frames.Send(lane, Frames.Build(TransferFrameHeader.Reply(TransferOpcode.Hello, helloHeader.RequestId, TransferStatus.Ok), TransferHelloReply.Size, reply.Write));
            if (_core.Key is { } key)
            {
                if (!reader.ReadExact(header)) { lane.Dispose(); return; }
                var (auth, authHeader) = ReadRequest(reader, header);
                if (authHeader.Opcode != TransferOpcode.Auth)
                    throw new RefusedException(authHeader, TransferStatus.AuthRequired, $"{authHeader.Opcode} before AUTH");
                var proof = TransferAuthRequest.Parse(auth);
                if (!AuthHandshake.ProofsEqual(AuthHandshake.ClientProof(AuthLabels.Transfer, key, nonce, proof.ClientNonce), proof.ClientProof))
                    throw new RefusedException(authHeader, TransferStatus.AuthFailed, "wrong client proof");
                var serverProof = AuthHandshake.ServerProof(AuthLabels.Transfer, key, nonce, proof.ClientNonce);
                Frames.Send(lane, Frames.Build(TransferFrameHeader.Reply(TransferOpcode.Auth, authHeader.RequestId, TransferStatus.Ok), serverProof));
            }
            watchdog.Dispose();   // waits for a closing watchdog: past this line the lane is closed only if the deadline passed
            if (timeout.IsCancellationRequested) throw new OperationCanceledException(timeout.Token);
            _core.Options.ApplyPathSocketBuffers(lane);   // the handshake's round trips are what the kernel measured the path by
            claim = null;
            Join(pending, request.LaneIndex, reader);
        }
        catch (RefusedException r)
        {
            watchdog.Dispose();
            Release(claim);
            Refuse(lane, r.Opcode, r.RequestId, r.Status);
        }
        catch (TransferProtocolException e)
        {
            watchdog.Dispose();
            Release(claim);
            var (opcode, requestId) = TransferFrameHeader.Peek(header);
            Refuse(lane, opcode, requestId, e.Status);
        }
        catch (Exception)   // a lane that broke during its handshake (reset, timeout, shutdown) is just dropped
        {
            watchdog.Dispose();
            Release(claim);
            lane.Dispose();
        }
    }

    /// <summary>Parses a handshake request header and reads its metadata; a handshake frame has no payload.</summary>
    private static (byte[] Meta, TransferFrameHeader Header) ReadRequest(LaneReader reader, byte[] header)
    {
        var h = TransferFrameHeader.Read(header, 0);
        var meta = new byte[h.MetaLength];
        reader.ReadRequired(meta);
        if (h.IsReply) throw new RefusedException(h, TransferStatus.BadSession, "a reply during the handshake");
        if (h.Status != TransferStatus.Ok) throw new RefusedException(h, TransferStatus.BadFrame, "a handshake request carries a status");
        return (meta, h);
    }

    private PendingSession Reserve(TransferHelloRequest hello, IPEndPoint remote, TransferFrameHeader h)
    {
        if (hello.LaneCount is < 1 or > TransferLimits.MaxLanes || hello.LaneIndex >= hello.LaneCount)
            throw new RefusedException(h, TransferStatus.BadSession, $"lane {hello.LaneIndex} of {hello.LaneCount}");
        lock (_pending)
        {
            if (!_pending.TryGetValue(hello.SessionId, out var p))
            {
                _pending[hello.SessionId] = p = new PendingSession(hello, remote);
                _ = Task.Delay(_core.Options.HandshakeTimeout).ContinueWith(_ => Expire(hello.SessionId, p), TaskScheduler.Default);
            }
            if (p.First.LaneCount != hello.LaneCount || p.First.EngineId != hello.EngineId)
                throw new RefusedException(h, TransferStatus.BadSession, $"lane_count {hello.LaneCount} differs from the session's {p.First.LaneCount}");
            if (p.Reserved[hello.LaneIndex])
                throw new RefusedException(h, TransferStatus.BadSession, $"lane {hello.LaneIndex} already joined");
            p.Reserved[hello.LaneIndex] = true;
            p.ReservedCount++;
            return p;
        }
    }

    /// <summary>
    /// Gives back the place a lane claimed at HELLO when its handshake failed after (a wrong proof, a reset): another
    /// lane may take it while the session waits; a session whose only claim this was is forgotten.
    /// </summary>
    private void Release((PendingSession Session, int Index)? claim)
    {
        if (claim is not var (p, index)) return;
        lock (_pending)
        {
            if (!_pending.TryGetValue(p.First.SessionId, out var current) || current != p || !p.Reserved[index]) return;
            p.Reserved[index] = false;
            if (--p.ReservedCount == 0) _pending.Remove(p.First.SessionId);
        }
    }

    private void Join(PendingSession p, int index, LaneReader lane)
    {
        lock (_pending)
        {
            if (!_pending.TryGetValue(p.First.SessionId, out var current) || current != p || _stop.IsCancellationRequested)
            {
                lane.Socket.Socket.Dispose();   // expired meanwhile, or the engine is stopping
                return;
            }
            p.Joined[index] = lane;
            if (++p.JoinedCount < p.Joined.Length) return;
            _pending.Remove(p.First.SessionId);
        }
        int connId = _core.NextConnId();
        var session = new Session(_core, connId, p.First.EngineId, p.First.HostId, _core.MaxSlice, _core.MaxSlice, p.Joined);
        _core.Sessions[connId] = session;
        session.Start();
        if (!_accepted.Writer.TryWrite(new AcceptedConnection(p.Remote.Address, p.Remote.Port, connId)))
            session.Close("the engine is shutting down");
    }

    private void Expire(UInt128 sessionId, PendingSession p)
    {
        lock (_pending)
        {
            if (!_pending.TryGetValue(sessionId, out var current) || current != p) return;
            _pending.Remove(sessionId);
            CloseJoined(p);
        }
    }

    private static void CloseJoined(PendingSession p)
    {
        foreach (var lane in p.Joined) lane?.Socket.Socket.Dispose();
    }

    private static void Refuse(Socket lane, TransferOpcode opcode, ulong requestId, TransferStatus status)
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        using var watchdog = bound.Token.Register(lane.Dispose);
        try
        {
            Frames.Send(lane, Frames.Build(TransferFrameHeader.Reply(opcode, requestId, status), []));
            // Closing with unread bytes would reset the connection and could drop the reply before the
            // peer reads it: half-close, then read what the peer still sends (for a second at most).
            lane.Shutdown(SocketShutdown.Send);
            var scratch = new byte[4096];
            while (lane.Receive(scratch) > 0) { }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        finally
        {
            watchdog.Dispose();
            lane.Dispose();
        }
    }

    private sealed class RefusedException(TransferFrameHeader h, TransferStatus status, string reason) : Exception(reason)
    {
        public TransferOpcode Opcode { get; } = h.Opcode;
        public ulong RequestId { get; } = h.RequestId;
        public TransferStatus Status { get; } = status;
    }
}
