using System.Net;
using System.Net.Sockets;
using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>The outcome of one lane's handshake on the initiator side.</summary>
internal sealed record OpenedLane(LaneReader Reader, TransferHelloReply Hello);

/// <summary>
/// The initiator's side of a lane's handshake: HELLO, then AUTH when the target asks for it. An
/// engine with a key refuses a target that asks for none; a target whose server proof is wrong is
/// refused. Every failure is a <see cref="TransferException"/> saying which lane and why. Connect and
/// handshake use blocking calls only (the lane's descriptor must stay blocking, docs/transfer.md § Threads);
/// the cancellation token closing the socket is what bounds them in time.
/// </summary>
internal static class Handshake
{
    public static OpenedLane OpenLane(EngineCore core, IPEndPoint endpoint, UInt128 sessionId, int index, int count, CancellationToken ct)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        core.Options.ApplySocketBuffers(socket);
        try
        {
            using (var watchdog = ct.Register(socket.Dispose))
            {
                try { socket.Connect(endpoint); }
                catch (SocketException e) when (!ct.IsCancellationRequested) { throw new TransferException(TransferError.ConnectFailed, $"cannot connect lane {index} to {endpoint}: {e.Message}"); }
                var reader = new LaneReader(new LaneSocket(socket));
                var hello = new TransferHelloRequest(TransferLimits.Version, (ushort)index, (ushort)count, sessionId, core.EngineId, core.HostId);
                Frames.Send(socket, Frames.Build(TransferFrameHeader.Request(TransferOpcode.Hello, 1, TransferHelloRequest.Size), TransferHelloRequest.Size, hello.Write));
                var meta = ReceiveReply(reader, TransferOpcode.Hello, index);
                var reply = TransferHelloReply.Parse(meta);
                if (reply.MaxSlice == 0 || reply.MaxSlice > TransferLimits.MaxSliceBytes)
                    throw new TransferException(TransferError.ConnectFailed, $"lane {index}: the target announced max_slice {reply.MaxSlice}, outside 1..{TransferLimits.MaxSliceBytes}");
                if (core.Key is null && reply.AuthRequired)
                    throw new TransferException(TransferError.AuthFailed, $"lane {index}: the target requires an auth key and this engine has none (set AuthKey)");
                if (core.Key is not null && !reply.AuthRequired)
                    throw new TransferException(TransferError.AuthFailed, $"lane {index}: this engine has an auth key but the target asks for none; refusing an unauthenticated peer");
                if (core.Key is { } key)
                {
                    var clientNonce = AuthHandshake.NewNonce();
                    var auth = new TransferAuthRequest(clientNonce, AuthHandshake.ClientProof(AuthLabels.Transfer, key, reply.ServerNonce, clientNonce));
                    Frames.Send(socket, Frames.Build(TransferFrameHeader.Request(TransferOpcode.Auth, 2, TransferAuthRequest.Size), TransferAuthRequest.Size, auth.Write));
                    var proof = ReceiveReply(reader, TransferOpcode.Auth, index);
                    if (!AuthHandshake.ProofsEqual(AuthHandshake.ServerProof(AuthLabels.Transfer, key, reply.ServerNonce, clientNonce), proof))
                        throw new TransferException(TransferError.AuthFailed, $"lane {index}: the target's server proof is wrong (it does not hold this key)");
                }
                watchdog.Dispose();   // waits for a closing watchdog: past this line the socket is closed only if the deadline passed
                if (ct.IsCancellationRequested) throw new OperationCanceledException(ct);
                core.Options.ApplyPathSocketBuffers(socket);   // the handshake's round trips are what the kernel measured the path by
                return new OpenedLane(reader, reply);
            }
        }
        catch (Exception e)
        {
            socket.Dispose();
            if (ct.IsCancellationRequested && e is not TransferException)
                throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: handshake not complete within the handshake timeout (or cancelled)");
            if (e is TransferException) throw;
            if (e is TransferProtocolException p) throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: bad handshake reply ({p.Message})");
            if (e is SocketException or EndOfStreamException or ObjectDisposedException)
                throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: the target closed the lane during the handshake ({e.Message})");
            throw;
        }
    }

    /// <summary>Reads a handshake reply; a refusal becomes a <see cref="TransferException"/> naming its status.</summary>
    private static byte[] ReceiveReply(LaneReader reader, TransferOpcode opcode, int index)
    {
        var header = new byte[TransferLimits.HeaderSize];
        reader.ReadRequired(header);
        var h = TransferFrameHeader.Read(header, 0);
        var meta = new byte[h.MetaLength];
        reader.ReadRequired(meta);
        if (!h.IsReply || h.Opcode != opcode)
            throw new TransferException(TransferError.ConnectFailed, $"lane {index}: expected a {opcode} reply, got {h.Opcode}{(h.IsReply ? " reply" : " request")}");
        if (h.Status != TransferStatus.Ok)
        {
            var code = h.Status is TransferStatus.AuthFailed or TransferStatus.AuthRequired ? TransferError.AuthFailed : TransferError.ConnectFailed;
            string hint = h.Status == TransferStatus.AuthFailed ? " (wrong auth key)" : "";
            throw new TransferException(code, $"lane {index}: the target refused {opcode} with {h.Status.WireName()}{hint}", h.Status);
        }
        return meta;
    }
}
