using System.Net;
using System.Net.Sockets;
using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Tests;

/// <summary>
/// BufferedReceiver's checksumming read (the GET path of KvStoreOptions.VerifyValueCrc): every byte written to the
/// destination is handed to the callback exactly once, in order, right after it arrived, whether it came out of the
/// read-ahead buffer or straight from the socket.
/// </summary>
public sealed class ChecksummedReceiveTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(65_535)]
    [InlineData(65_536)]
    [InlineData(65_537)]
    [InlineData(1_000_003)]
    public async Task The_callback_sees_the_destination_once_in_order_and_the_crc_is_the_values(int size)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await sender.ConnectAsync(listener.LocalEndPoint!);
        using var receiver = await listener.AcceptAsync();

        var head = TestValues.Value(1, 100);
        var value = TestValues.Value(2, size);
        var send = Task.Run(async () =>
        {
            // Odd-sized sends, so the value arrives partly in the read-ahead buffer, partly straight into the destination.
            var all = head.Concat(value).Concat(head).ToArray();
            for (int at = 0, step = 7; at < all.Length; at += step, step = step * 3 % 200_003 + 1)
                await sender.SendAsync(all.AsMemory(at, Math.Min(step, all.Length - at)), SocketFlags.None);
        });

        var rx = new BufferedReceiver(receiver);
        await rx.ReadRequiredAsync(new byte[head.Length], CancellationToken.None);
        var dest = new byte[size];
        int seen = 0;
        uint state = await rx.ReadRequiredAsync(dest, Crc32C.InitialState, (s, piece) =>
        {
            Assert.True(piece.SequenceEqual(value.AsSpan(seen, piece.Length)), $"piece at {seen} is not the value's bytes there");
            seen += piece.Length;
            return Crc32C.Append(s, piece);
        }, CancellationToken.None);
        var tail = new byte[head.Length];
        await rx.ReadRequiredAsync(tail, CancellationToken.None);
        await send;

        Assert.Equal(size, seen);
        Assert.Equal(value, dest);
        Assert.Equal(Crc32C.Compute(value), Crc32C.Complete(state));
        Assert.Equal(head, tail);
    }
}
