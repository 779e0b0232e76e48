using System.Net;
using System.Net.Sockets;
using Kvasir.Net;
using Kvasir.Protocol;

namespace Kvasir.Client.Tests;

/// <summary>
/// BufferedReceiver's large reads (values) go straight from the socket into their destination once the read-ahead
/// buffer is empty, down to their last byte; small reads (headers, metadata) come through the buffer. Either way every
/// byte lands where it belongs, in order.
/// </summary>
public sealed class DirectReceiveTests
{
    private static async Task<(Socket Sender, Socket Receiver, Socket Listener)> PairAsync()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var sender = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await sender.ConnectAsync(listener.LocalEndPoint!);
        var receiver = await listener.AcceptAsync();
        return (sender, receiver, listener);
    }

    /// <summary>Waits (bounded) until <paramref name="count"/> bytes sit in the receiver's socket, so a receive into the buffer would take them all.</summary>
    private static async Task WaitAvailableAsync(Socket receiver, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (receiver.Available < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {receiver.Available} of {count} bytes arrived within 10 s");
            await Task.Delay(5);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_value_read_ends_on_its_last_byte_and_leaves_the_next_header_unread(bool checksummed)
    {
        var (sender, receiver, listener) = await PairAsync();
        using (sender) using (receiver) using (listener)
        {
            var head = TestValues.Value(1, 100);
            var value = TestValues.Value(2, 64 * 1024);
            var next = TestValues.Value(3, 100);
            var all = head.Concat(value).Concat(next).ToArray();
            await sender.SendAsync(all, SocketFlags.None);
            // Everything is in the socket: the header's receive into the buffer takes the value's first bytes with it.
            await WaitAvailableAsync(receiver, all.Length);

            var rx = new BufferedReceiver(receiver);
            var h = new byte[head.Length];
            await rx.ReadRequiredAsync(h, CancellationToken.None);
            Assert.True(rx.Buffered > 0, "the header's receive should have read ahead into the value");
            var dest = new byte[value.Length];
            if (checksummed)
            {
                uint state = await rx.ReadRequiredAsync(dest, Crc32C.InitialState, Crc32C.Append, CancellationToken.None);
                Assert.Equal(Crc32C.Compute(value), Crc32C.Complete(state));
            }
            else
            {
                await rx.ReadRequiredAsync(dest, CancellationToken.None);
            }

            // The rest of the value came straight from the socket, exactly to its end: nothing of the next frame was
            // pulled into the buffer (before, the value's tail went through the buffer and took the next header along).
            Assert.Equal(0, rx.Buffered);
            var n = new byte[next.Length];
            await rx.ReadRequiredAsync(n, CancellationToken.None);
            Assert.Equal(head, h);
            Assert.Equal(value, dest);
            Assert.Equal(next, n);
        }
    }

    [Fact]
    public async Task Reads_on_both_sides_of_the_direct_threshold_get_every_byte_in_order()
    {
        var (sender, receiver, listener) = await PairAsync();
        using (sender) using (receiver) using (listener)
        {
            int d = BufferedReceiver.DirectReadMin;
            int[] sizes = [32, 7, d - 1, d, d + 1, 100, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 3, 1_000_003, 1, d, 32];
            var parts = sizes.Select((n, i) => TestValues.Value(10 + i, n)).ToArray();
            var all = parts.SelectMany(p => p).ToArray();
            var send = Task.Run(async () =>
            {
                // Odd-sized sends, so reads find the buffer now full, now empty, now holding part of what they want.
                for (int at = 0, step = 7; at < all.Length; at += step, step = step * 3 % 200_003 + 1)
                    await sender.SendAsync(all.AsMemory(at, Math.Min(step, all.Length - at)), SocketFlags.None);
            });

            var rx = new BufferedReceiver(receiver);
            for (int i = 0; i < parts.Length; i++)
            {
                var dest = new byte[parts[i].Length];
                await rx.ReadRequiredAsync(dest, CancellationToken.None);
                Assert.True(parts[i].AsSpan().SequenceEqual(dest), $"read {i} ({sizes[i]} bytes) differs from what was sent");
            }
            await send;
            Assert.Equal(0, rx.Buffered);
        }
    }
}
