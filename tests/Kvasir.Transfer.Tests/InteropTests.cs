using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// This engine drives the scripted interop peer (docs/transfer.md § Interop peer) in another process:
/// the .NET <c>kvasir transfer-peer</c> and the Python <c>python3 -m kvasir.transfer.peer</c> (the
/// Python twin in python/kvasir/transfer), so the two implementations are checked against each other.
/// </summary>
public sealed partial class InteropTests
{
    private const string Key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    [Theory]
    [InlineData("dotnet", false)]
    [InlineData("dotnet", true)]
    [InlineData("python", false)]
    [InlineData("python", true)]
    public async Task The_driver_writes_reads_fills_and_echoes_through_the_peer(string kind, bool auth)
    {
        const int slice = 64 * 1024;
        string[] authArgs = auth ? ["--auth-key", Key] : [];
        using var peer = PeerProcess.Start(kind, ["--region-bytes", "4194304", "--slice-bytes", $"{slice}", "--nconn-per-cpu", "3", .. authArgs]).WaitListening();
        using var engine = TransferEngine.Start(new() { SliceBytes = slice, AuthKey = auth ? Key : null, Ncpus = 2 });
        var inbox = new Inbox(engine, peer);
        int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
        peer.WaitEvent("accepted");
        var advert = (await inbox.NextAsync("advert:"))[7..];
        Assert.Equal(64, advert.Length);

        // write into the peer; it hashes what landed
        var src = Bytes.Pattern(3 * slice + 5, 11);
        int s = engine.Register(src);
        await engine.WriteAsync(conn, s, 0, src.Length, advert).WaitAsync(EnginePair.Deadline);
        await engine.SendNotificationAsync(conn, Encoding.UTF8.GetBytes($"sha:0:{src.Length}"));
        Assert.Equal("sha:" + Sha(src), Encoding.UTF8.GetString(await inbox.NextAsync("sha:")));

        // the peer fills its region and writes it into our window, with a notification
        var window = new byte[1 << 20];
        int w = engine.Register(window);
        var ours = engine.Advertise(conn, w, 0, window.Length);
        await engine.SendNotificationAsync(conn, (byte[])[.. Encoding.UTF8.GetBytes($"fill:{window.Length - 1}:7|"), .. ours]);
        Assert.Equal($"filled:{window.Length - 1}", Encoding.UTF8.GetString(await inbox.NextAsync("filled:")));
        Assert.Equal(Bytes.Pattern(window.Length - 1, 7), window[..^1]);

        // the peer reads our window and hashes what it read
        Bytes.Pattern(window.Length, 99).CopyTo(window, 0);
        await engine.SendNotificationAsync(conn, (byte[])[.. Encoding.UTF8.GetBytes($"read:{slice + 1}|"), .. ours]);
        Assert.Equal("sha:" + Sha(window[..(slice + 1)]), Encoding.UTF8.GetString(await inbox.NextAsync("sha:")));

        // two-sided: the peer receives on tag 1 and echoes on tag 2
        await engine.SendNotificationAsync(conn, "kv-echo:200000"u8.ToArray());
        var kvOut = new byte[200_000];
        var kvIn = new byte[200_000];
        int t1 = await engine.RegisterKvAsync(conn, kvOut);
        int t2 = await engine.RegisterKvAsync(conn, kvIn);
        var message = Bytes.Pattern(150_001, 5);
        await engine.SendKvAsync(t1, message).WaitAsync(EnginePair.Deadline);
        Assert.Equal(message.Length, await engine.RecvKvAsync(t2, kvIn.Length).WaitAsync(EnginePair.Deadline));
        Assert.Equal(message, kvIn[..message.Length]);

        await engine.SendNotificationAsync(conn, "bye"u8.ToArray());
        peer.WaitEvent("bye");
        Assert.True(peer.Process.WaitForExit(10_000), "the peer did not exit after bye");
        Assert.Equal(0, peer.Process.ExitCode);
    }

    [Fact]
    public async Task A_same_host_peer_with_a_shared_region_is_written_and_read_by_one_memcpy_and_still_checks_the_completion()
    {
        // The Python peer allocates its region in /dev/shm (alloc_shared) and, having accepted this engine's
        // connection from this host, advertises it with the shared-memory extension.
        using var peer = PeerProcess.StartPython("--region-bytes", $"{4 << 20}", "--shared-region").WaitListening();
        using var engine = TransferEngine.Start(new() { SliceBytes = 64 * 1024 });
        var inbox = new Inbox(engine, peer);
        int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
        peer.WaitEvent("accepted");
        var advert = (await inbox.NextAsync("advert:"))[7..];
        Assert.True(advert.Length > 64, "the advertisement has no shared-memory extension");

        var src = Bytes.Pattern((3 << 20) + 5, 13);
        int s = engine.Register(src);
        await engine.WriteAsync(conn, s, 0, src.Length, advert).WaitAsync(EnginePair.Deadline);
        Assert.Equal(1, engine.SharedMemoryTransfers);
        await engine.SendNotificationAsync(conn, Encoding.UTF8.GetBytes($"sha:0:{src.Length}"));
        Assert.Equal("sha:" + Sha(src), Encoding.UTF8.GetString(await inbox.NextAsync("sha:")));

        var back = new byte[src.Length];
        int b = engine.Register(back);
        await engine.ReadAsync(conn, b, 0, back.Length, advert).WaitAsync(EnginePair.Deadline);
        Assert.Equal(2, engine.SharedMemoryTransfers);
        Assert.Equal(src, back);

        // a tampered token: the bytes are copied (same user, mode 0600), but the target refuses the completion
        var bad = (byte[])advert.Clone();
        bad[32] ^= 0xFF;
        var e = await Assert.ThrowsAsync<TransferException>(() => engine.WriteAsync(conn, s, 0, 100, bad).WaitAsync(EnginePair.Deadline));
        Assert.Contains("NOT_ADVERTISED", e.Message, StringComparison.Ordinal);

        await engine.SendNotificationAsync(conn, "bye"u8.ToArray());
        peer.WaitEvent("bye");
        Assert.True(peer.Process.WaitForExit(10_000), "the peer did not exit after bye");
    }

    [Theory]
    [InlineData("dotnet", false)]
    [InlineData("python", false)]
    [InlineData("python", true)]
    public async Task The_driver_pulls_the_layer_groups_the_peer_announces(string kind, bool shared)
    {
        // The peer is the prefill: it fills its region one layer group at a time (last first) and announces each; this
        // engine is the decoder and reads each group when its note arrives (from the peer's shared file when shared).
        const int groups = 5, size = 100_003;
        using var peer = PeerProcess.Start(kind, ["--region-bytes", $"{1 << 20}", "--slice-bytes", "65536", .. shared ? (string[])["--shared-region"] : []]).WaitListening();
        using var engine = TransferEngine.Start(new() { SliceBytes = 65536, Ncpus = 2 });
        var inbox = new Inbox(engine, peer);
        int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
        peer.WaitEvent("accepted");
        var advert = (await inbox.NextAsync("advert:"))[7..];
        var local = new byte[groups * size];
        int r = engine.Register(local);
        using var pull = engine.PullLayers(conn, 77, [.. Enumerable.Range(0, groups).Select(g => new LayerGroup(r, g * size, size, advert, g * size))]);
        await engine.SendNotificationAsync(conn, Encoding.UTF8.GetBytes($"layers:77:21:{groups}:{size}"));
        await pull.Completion.WaitAsync(EnginePair.Deadline);
        Assert.Equal(Bytes.Pattern(local.Length, 21), local);
        Assert.Equal(shared ? groups : 0, engine.SharedMemoryTransfers);
        await engine.SendNotificationAsync(conn, "bye"u8.ToArray());
        peer.WaitEvent("bye");
    }

    [Theory]
    [InlineData("dotnet")]
    [InlineData("python")]
    public async Task A_peer_with_another_key_is_refused(string kind)
    {
        using var peer = PeerProcess.Start(kind, "--auth-key", Key).WaitListening();
        using var engine = TransferEngine.Start(new() { AuthKey = new string('e', 64) });
        var e = await Assert.ThrowsAsync<TransferException>(() => engine.AddRemoteEndpointAsync(peer.Metadata));
        Assert.Equal(TransferError.AuthFailed, e.Code);
    }

    [Fact]
    public async Task A_peer_killed_mid_transfer_fails_the_write_with_a_clear_error_and_a_new_connection_then_works()
    {
        const int size = 64 << 20;
        using var engine = TransferEngine.Start(new() { TransferTimeout = TimeSpan.FromSeconds(60) });
        var src = Bytes.Pattern(size, 3);
        int s = engine.Register(src);
        using (var peer = PeerProcess.StartDotnet("--region-bytes", $"{size}").WaitListening())
        {
            int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
            var advert = (await new Inbox(engine, peer).NextAsync("advert:"))[7..];
            Signal(peer, 19);   // SIGSTOP: the peer stops reading, so the write stays in flight
            var write = engine.WriteAsync(conn, s, 0, size, advert);
            Assert.False(write.IsCompleted, "a 64 MiB write to a stopped peer completed");
            peer.Kill();
            var e = await Assert.ThrowsAsync<TransferException>(() => write.WaitAsync(EnginePair.Deadline));
            Assert.Equal(TransferError.ConnectionLost, e.Code);
            Assert.Contains($"connection {conn} lost", e.Message);
            // The transfer fails as soon as its lane closes; the session leaves the list when its last lane is torn down.
            await Poll.UntilAsync(() => !engine.Connections.Contains(conn), "the lost connection to leave the engine's list");
            await Poll.UntilAsync(() => engine.LiveThreadCount == 0, "the lost connection's lane threads (receiver and sender of each lane) to end");
        }
        using var again = PeerProcess.StartDotnet("--region-bytes", $"{size}").WaitListening();
        int conn2 = await engine.AddRemoteEndpointAsync(again.Metadata).WaitAsync(EnginePair.Deadline);
        var inbox = new Inbox(engine, again);
        var blob = (await inbox.NextAsync("advert:"))[7..];
        await engine.WriteAsync(conn2, s, 0, size, blob).WaitAsync(TimeSpan.FromSeconds(60));
        await engine.SendNotificationAsync(conn2, Encoding.UTF8.GetBytes($"sha:0:{size}"));
        Assert.Equal("sha:" + Sha(src), Encoding.UTF8.GetString(await inbox.NextAsync("sha:")));
    }

    [Fact]
    public async Task A_write_to_a_peer_that_stopped_answering_fails_at_the_transfer_timeout()
    {
        using var engine = TransferEngine.Start(new() { TransferTimeout = TimeSpan.FromSeconds(1) });
        using var peer = PeerProcess.StartDotnet("--region-bytes", $"{32 << 20}").WaitListening();
        int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
        var advert = (await new Inbox(engine, peer).NextAsync("advert:"))[7..];
        Signal(peer, 19);
        try
        {
            var e = await Assert.ThrowsAsync<TransferException>(() => engine.WriteAsync(conn, engine.Register(new byte[32 << 20]), 0, 32 << 20, advert).WaitAsync(EnginePair.Deadline));
            Assert.Equal(TransferError.Timeout, e.Code);
            Assert.Contains("transfer timeout of 1 s", e.Message);
            await Poll.UntilAsync(() => !engine.Connections.Contains(conn), "the timed-out transfer's connection to be closed");
        }
        finally
        {
            peer.Kill();
        }
    }

    [Fact]
    public async Task Deregister_of_a_region_with_a_write_in_flight_returns_only_after_the_write_ended()
    {
        using var engine = TransferEngine.Start(new() { TransferTimeout = TimeSpan.FromSeconds(2) });
        using var peer = PeerProcess.StartDotnet("--region-bytes", $"{32 << 20}").WaitListening();
        int conn = await engine.AddRemoteEndpointAsync(peer.Metadata).WaitAsync(EnginePair.Deadline);
        var advert = (await new Inbox(engine, peer).NextAsync("advert:"))[7..];
        Signal(peer, 19);
        try
        {
            int src = engine.Register(new byte[32 << 20]);
            var write = engine.WriteAsync(conn, src, 0, 32 << 20, advert);
            await Task.Run(() => engine.Deregister(src)).WaitAsync(EnginePair.Deadline);
            Assert.True(write.IsFaulted, "Deregister returned while the write from its region was still in flight");
            Assert.Equal(TransferError.UnknownId, Assert.Throws<TransferException>(() => engine.RegionAddress(src)).Code);
        }
        finally
        {
            peer.Kill();
        }
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void Signal(PeerProcess peer, int signal) =>
        Assert.True(Kill(peer.Process.Id, signal) == 0, $"kill({peer.Process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>The driver's notifications from the peer, taken in order by prefix; a wait fails with the peer's output.</summary>
    private sealed class Inbox(TransferEngine engine, PeerProcess peer)
    {
        private readonly List<byte[]> _pending = [];

        public async Task<byte[]> NextAsync(string prefix)
        {
            var p = Encoding.UTF8.GetBytes(prefix);
            byte[]? found = null;
            await Poll.UntilAsync(() =>
            {
                _pending.AddRange(engine.GetNotifications().Select(n => n.Bytes));
                found = _pending.FirstOrDefault(b => b.AsSpan().StartsWith(p));
                if (found is not null) _pending.Remove(found);
                return found is not null;
            }, () => $"a notification starting '{prefix}' from the peer (have {_pending.Count} others); {peer.Output}", EnginePair.Deadline);
            return found!;
        }
    }
}
