using System.Net.Sockets;

namespace Kvasir.Client.Tests;

/// <summary>The socket steps the tests' relays share (FlippingRelay, the CRC tests' feature-hiding relay, StripeTests' cutting relay).</summary>
internal static class RelaySockets
{
    /// <summary>Fills <paramref name="into"/>; false when the peer closed first.</summary>
    public static async Task<bool> ReadExactAsync(Socket from, Memory<byte> into, CancellationToken ct)
    {
        for (int done = 0; done < into.Length;)
        {
            int n = await from.ReceiveAsync(into[done..], SocketFlags.None, ct);
            if (n == 0) return false;
            done += n;
        }
        return true;
    }

    public static async Task SendAllAsync(Socket to, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        while (!data.IsEmpty) data = data[await to.SendAsync(data, SocketFlags.None, ct)..];
    }

    /// <summary>Shuts both directions down, ignoring a socket already gone.</summary>
    public static void Shut(Socket socket)
    {
        try { socket.Shutdown(SocketShutdown.Both); } catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { }
    }
}
