using System.Diagnostics;
using System.Globalization;
using System.Text;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

// Batch GET into caller buffers with the .NET client: shared memory vs TCP vs a plain memcpy of the same bytes.
// Usage: dotnet run -c Release --project bench/Kvasir.Bench.Shm -- [--seconds 3]
// One node in this process (1 GiB arena in /dev/shm, its own sockets on 127.0.0.1), a 256 MiB key
// space per value size, batches of 16 × 1 MiB and 4 × 16 MiB rotating over it; the memcpy ceiling
// copies as many bytes from a 256 MiB buffer in the same rotation. Medians of 5 rounds, GB/s.
double seconds = 3;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--seconds" && i + 1 < args.Length) seconds = double.Parse(args[++i], CultureInfo.InvariantCulture);
    else { Console.Error.WriteLine("usage: Kvasir.Bench.Shm [--seconds 3]"); return 2; }
}

await using var node = new CacheNode(new NodeOptions
{
    Port = 0,
    SharedMemory = true,
    Store = new StoreOptions { Capacity = 1L << 30, MaxValueBytes = 64 << 20 },
});
node.Start();
var server = $"127.0.0.1:{node.Port}";
await using var shm = await KvStore.ConnectAsync(new KvStoreOptions { Server = server, Transport = KvTransportKind.Shm });
await using var tcp = await KvStore.ConnectAsync(new KvStoreOptions { Server = server, Transport = KvTransportKind.Tcp });
Console.WriteLine($"node {server}, shm {node.Store.SharedMemoryPath}, {Environment.ProcessorCount} cores");
Console.WriteLine("| batch | shm GB/s | TCP GB/s | memcpy GB/s | shm / memcpy | shm / TCP |");
Console.WriteLine("| --- | --- | --- | --- | --- | --- |");

foreach (var (size, batch) in new[] { (1 << 20, 16), (16 << 20, 4) })
{
    int keyCount = (256 << 20) / size;
    var source = new byte[256 << 20];
    new Random(size).NextBytes(source);
    var keys = Enumerable.Range(0, keyCount).Select(k => (ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes($"v{size}/{k}")).ToArray();
    for (int k = 0; k < keyCount; k += batch)
    {
        var statuses = await tcp.PutAsync(keys[k..(k + batch)], Enumerable.Range(k, batch).Select(j => (ReadOnlyMemory<byte>)source.AsMemory(j * size, size)).ToArray());
        if (statuses.Any(s => s != KvStatus.Ok)) throw new InvalidOperationException($"put failed: {string.Join(",", statuses)}");
    }
    var dest = new byte[batch * size];
    var dests = Enumerable.Range(0, batch).Select(j => (Memory<byte>)dest.AsMemory(j * size, size)).ToArray();
    int next = 0;

    async Task Get(KvStore store, bool verify)
    {
        int first = next;
        next = (next + batch) % keyCount;
        var results = await store.GetAsync(keys[first..(first + batch)], dests);
        if (results.Any(r => r.Status != KvStatus.Ok || r.Length != size)) throw new InvalidOperationException($"get failed: {string.Join(",", results)}");
        if (verify && !dest.AsSpan().SequenceEqual(source.AsSpan(first * size, batch * size))) throw new InvalidOperationException("wrong bytes");
    }

    Task Copy()
    {
        int first = next;
        next = (next + batch) % keyCount;
        source.AsSpan(first * size, batch * size).CopyTo(dest);
        return Task.CompletedTask;
    }

    // One pass over the whole key space per transport, every byte checked, also warms up the JIT.
    for (int k = 0; k < keyCount; k += batch) { await Get(shm, true); await Get(tcp, true); }
    double rShm = await Rate(() => Get(shm, false), (long)batch * size, seconds);
    double rTcp = await Rate(() => Get(tcp, false), (long)batch * size, seconds);
    double rCopy = await Rate(Copy, (long)batch * size, seconds);
    Console.WriteLine(FormattableString.Invariant($"| {batch} × {size >> 20} MiB | {rShm:0.00} | {rTcp:0.00} | {rCopy:0.00} | **{rShm / rCopy:0.00}** | {rShm / rTcp:0.00}× |"));
    await tcp.RemoveAsync(keys);
}
return 0;

static async Task<double> Rate(Func<Task> op, long bytes, double seconds)
{
    var rounds = new List<double>();
    for (int r = 0; r < 5; r++)
    {
        long moved = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds / 5)
        {
            await op();
            moved += bytes;
        }
        rounds.Add(moved / clock.Elapsed.TotalSeconds / 1e9);
    }
    rounds.Sort();
    return rounds[2];
}
