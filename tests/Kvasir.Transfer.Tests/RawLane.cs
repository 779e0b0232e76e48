using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Tests;

/// <summary>A raw TCP lane to an engine, speaking frames through the protocol codec only: for tests that send what an engine never would.</summary>
public sealed class RawLane : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawLane(Socket socket)
    {
        _socket = socket;
        _socket.ReceiveTimeout = (int)EnginePair.Deadline.TotalMilliseconds;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public static RawLane Connect(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        s.Connect("127.0.0.1", port);
        return new RawLane(s);
    }

    public static UInt128 NewId() => BinaryPrimitives.ReadUInt128LittleEndian(RandomNumberGenerator.GetBytes(16));

    /// <summary>HELLO (and AUTH with <paramref name="key"/>) for lane <paramref name="index"/> of <paramref name="count"/>; returns the HELLO reply.</summary>
    public TransferHelloReply Join(UInt128 session, int index = 0, int count = 1, byte[]? key = null, AuthLabels? labels = null, UInt128? hostId = null,
        UInt128? engineId = null)
    {
        var (h, replyMeta) = Hello(session, index, count, engineId, hostId);
        Assert.Equal(TransferStatus.Ok, h.Status);
        var reply = TransferHelloReply.Parse(replyMeta);
        if (key is not null)
        {
            var nonce = AuthHandshake.NewNonce();
            var auth = new TransferAuthRequest(nonce, AuthHandshake.ClientProof(labels ?? AuthLabels.Transfer, key, reply.ServerNonce, nonce));
            var authMeta = new byte[TransferAuthRequest.Size];
            auth.Write(authMeta);
            Send(TransferFrameHeader.Request(TransferOpcode.Auth, 2, authMeta.Length), authMeta);
        }
        return reply;
    }

    /// <summary>Sends HELLO for lane <paramref name="index"/> of <paramref name="count"/> and returns the reply, whatever its status.</summary>
    public (TransferFrameHeader Header, byte[] Meta) Hello(UInt128 session, int index, int count, UInt128? engineId = null, UInt128? hostId = null)
    {
        var hello = new TransferHelloRequest(1, (ushort)index, (ushort)count, session, engineId ?? NewId(), hostId ?? NewId());
        var meta = new byte[TransferHelloRequest.Size];
        hello.Write(meta);
        Send(TransferFrameHeader.Request(TransferOpcode.Hello, 1, meta.Length), meta);
        var (h, replyMeta, _) = Receive();
        return (h, replyMeta);
    }

    public void Send(TransferFrameHeader header, ReadOnlySpan<byte> meta, ReadOnlySpan<byte> payload = default)
    {
        var head = new byte[TransferLimits.HeaderSize];
        header.Write(head);
        _stream.Write(head);
        _stream.Write(meta);
        _stream.Write(payload);
    }

    public void SendRaw(ReadOnlySpan<byte> bytes) => _stream.Write(bytes);

    public void SendWrite(ulong transferId, WriteSlice w, ReadOnlySpan<byte> payload)
    {
        var meta = new byte[w.Size];
        w.Write(meta);
        Send(TransferFrameHeader.Request(TransferOpcode.Write, transferId, meta.Length, payload.Length), meta, payload);
    }

    /// <summary>The next frame (a reply to us, or a request of the engine's).</summary>
    public (TransferFrameHeader Header, byte[] Meta, byte[] Payload) Receive()
    {
        var head = new byte[TransferLimits.HeaderSize];
        _stream.ReadExactly(head);
        var h = TransferFrameHeader.Read(head);
        var meta = new byte[h.MetaLength];
        _stream.ReadExactly(meta);
        var payload = new byte[h.PayloadLength];
        _stream.ReadExactly(payload);
        return (h, meta, payload);
    }

    /// <summary>True when the engine closed the lane: the next read finds the end of the stream (or a reset).</summary>
    public bool IsClosedByPeer()
    {
        try { return _stream.Read(new byte[1]) == 0; }
        catch (IOException) { return true; }
    }

    public void Dispose() => _stream.Dispose();
}
