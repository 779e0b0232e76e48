using System.Net;
using System.Net.Sockets;
using Kvasir.Net;
using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>The outcome of one lane's handshake on the initiator side.</summary>
internal sealed record OpenedLane(Socket Socket, BufferedReceiver Receiver, TransferHelloReply Hello);

/// <summary>
/// The initiator's side of a lane's handshake: HELLO, then AUTH when the target asks for it. An
/// engine with a key refuses a target that asks for none; a target whose server proof is wrong is
/// refused. Every failure is a <see cref="TransferException"/> saying which lane and why.
/// </summary>
internal static class Handshake
{
    public static async Task<OpenedLane> OpenLaneAsync(EngineCore core, IPEndPoint endpoint, UInt128 sessionId, int index, int count, CancellationToken ct)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            try { await socket.ConnectAsync(endpoint, ct).ConfigureAwait(false); }
            catch (SocketException e) { throw new TransferException(TransferError.ConnectFailed, $"cannot connect lane {index} to {endpoint}: {e.Message}"); }
            var receiver = new BufferedReceiver(socket);
            var hello = new TransferHelloRequest(TransferLimits.Version, (ushort)index, (ushort)count, sessionId, core.EngineId, core.HostId);
            await SendAsync(socket, TransferOpcode.Hello, 1, TransferHelloRequest.Size, hello.Write, ct).ConfigureAwait(false);
            var meta = await ReceiveReplyAsync(receiver, TransferOpcode.Hello, index, ct).ConfigureAwait(false);
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
                await SendAsync(socket, TransferOpcode.Auth, 2, TransferAuthRequest.Size, auth.Write, ct).ConfigureAwait(false);
                var proof = await ReceiveReplyAsync(receiver, TransferOpcode.Auth, index, ct).ConfigureAwait(false);
                if (!AuthHandshake.ProofsEqual(AuthHandshake.ServerProof(AuthLabels.Transfer, key, reply.ServerNonce, clientNonce), proof))
                    throw new TransferException(TransferError.AuthFailed, $"lane {index}: the target's server proof is wrong (it does not hold this key)");
            }
            return new OpenedLane(socket, receiver, reply);
        }
        catch (Exception e)
        {
            socket.Dispose();
            if (e is TransferException) throw;
            if (e is OperationCanceledException) throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: handshake not complete within the handshake timeout");
            if (e is TransferProtocolException p) throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: bad handshake reply ({p.Message})");
            if (e is SocketException or EndOfStreamException) throw new TransferException(TransferError.ConnectFailed, $"lane {index} to {endpoint}: the target closed the lane during the handshake ({e.Message})");
            throw;
        }
    }

    private static async Task SendAsync(Socket socket, TransferOpcode opcode, ulong requestId, int metaLength, Frames.MetaWriter write, CancellationToken ct)
    {
        var frame = Frames.Build(TransferFrameHeader.Request(opcode, requestId, metaLength), metaLength, write);
        await socket.SendAsync(frame, SocketFlags.None, ct).ConfigureAwait(false);
    }

    /// <summary>Reads a handshake reply; a refusal becomes a <see cref="TransferException"/> naming its status.</summary>
    private static async Task<byte[]> ReceiveReplyAsync(BufferedReceiver receiver, TransferOpcode opcode, int index, CancellationToken ct)
    {
        var header = new byte[TransferLimits.HeaderSize];
        await receiver.ReadRequiredAsync(header, ct).ConfigureAwait(false);
        var h = TransferFrameHeader.Read(header, 0);
        var meta = new byte[h.MetaLength];
        await receiver.ReadRequiredAsync(meta, ct).ConfigureAwait(false);
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
