using System.Net.Sockets;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>Builds the head (header and metadata) of an outgoing frame as one small array.</summary>
internal static class Frames
{
    public delegate int MetaWriter(Span<byte> destination);

    public static byte[] Build(TransferFrameHeader header, ReadOnlySpan<byte> meta)
    {
        var head = new byte[TransferLimits.HeaderSize + meta.Length];
        (header with { MetaLength = meta.Length }).Write(head);
        meta.CopyTo(head.AsSpan(TransferLimits.HeaderSize));
        return head;
    }

    public static byte[] Build(TransferFrameHeader header, int metaLength, MetaWriter writeMeta)
    {
        var head = new byte[TransferLimits.HeaderSize + metaLength];
        (header with { MetaLength = metaLength }).Write(head);
        writeMeta(head.AsSpan(TransferLimits.HeaderSize));
        return head;
    }

    /// <summary>Sends a whole frame with blocking calls (handshakes, on a lane's blocking socket before its threads start).</summary>
    public static void Send(Socket socket, byte[] frame)
    {
        for (int sent = 0; sent < frame.Length;) sent += socket.Send(frame, sent, frame.Length - sent, SocketFlags.None);
    }
}
