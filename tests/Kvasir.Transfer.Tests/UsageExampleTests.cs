namespace Kvasir.Transfer.Tests;

/// <summary>The worked example of docs/transfer.md § .NET usage, as written there, so it cannot rot.</summary>
public sealed class UsageExampleTests
{
    [Fact]
    public async Task The_dotnet_usage_example_of_the_docs_runs()
    {
        // decode side: owns the KV buffer, offers a window of it to one connection
        using var dec = TransferEngine.Start(new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2 }); // 127.0.0.1, port 0
        using var pre = TransferEngine.Start(new TransferEngineOptions { Ncpus = 2, NconnPerCpu = 2 });
        var accepting = dec.AcceptAsync();
        int conn = await pre.AddRemoteEndpointAsync(dec.GetMetadata());   // or pre.ConnectAsync("10.0.0.7", port)
        int dconn = (await accepting).ConnId;

        var kv = new byte[64 << 20];                                       // or dec.Register(nativePtr, length)
        int mr = dec.Register(kv);                                         // pinned until Deregister
        byte[] blob = dec.Advertise(dconn, mr, offset: 0, length: kv.Length);  // 64 bytes: carry it to the prefill

        var blocks = new byte[16 << 20];
        int src = pre.Register(blocks);
        await pre.WriteAsync(conn, src, 0, blocks.Length, blob, "req-42 done"u8.ToArray());
        await dec.WaitForNotificationsAsync();
        var notes = dec.GetNotifications();                                // [(dconn, "req-42 done")]

        ulong id = pre.StartWrite(conn, src, 0, 4096, blob);               // async form: Poll(id) or WaitAsync(id)
        while (!pre.Poll(id)) { /* other work */ }                         // Poll throws the failure, if any

        // two-sided (KVTrans): both sides RegisterKv in the same order, so tags agree
        int kSend = await pre.RegisterKvAsync(conn, new byte[1 << 20]);
        int kRecv = await dec.RegisterKvAsync(dconn, new byte[1 << 20]);
        await pre.SendKvAsync(kSend, new byte[1000]);                      // throws TooLarge, Timeout, ConnectionLost...
        long n = await dec.RecvKvAsync(kRecv, maxSize: 1 << 20);           // 1000: the bytes are at the buffer's start
        dec.Deregister(mr);                                                // withdraws blob, waits for slices in flight

        Assert.Equal([(dconn, "req-42 done")], notes.Select(x => (x.ConnId, System.Text.Encoding.UTF8.GetString(x.Bytes))));
        Assert.Equal(1000, n);
        Assert.Equal(TransferError.NotAdvertised, (await Assert.ThrowsAsync<TransferException>(() => pre.WriteAsync(conn, src, 0, 1, blob))).Code);
    }
}
