using System.Diagnostics;
using Kvasir.Client;
using Kvasir.Fuzz;
using Kvasir.Server;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;

// Network fuzzer for a live node (issue 16): mutated golden frames on many connections while checksummed clients
// (TCP and shared memory) read and write beside them. Fails (exit 1) on any wrong byte, any error the node logs, any
// reservation, lease or buffered metadata left once the fuzzing connections are gone, a node that stops answering,
// or a process whose memory outgrew the arena by more than --rss-slack.
// Usage: Kvasir.Fuzz [--duration SEC] [--seed N] [--lanes N] [--vectors PATH] [--rss-slack MiB]
var opts = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(p => p.a[2..], p => p.i + 1 < args.Length ? args[p.i + 1] : "");
int duration = int.Parse(opts.GetValueOrDefault("duration", "60"));
int seed = opts.TryGetValue("seed", out var s) ? int.Parse(s) : Random.Shared.Next();
int lanes = int.Parse(opts.GetValueOrDefault("lanes", "8"));
long rssSlack = long.Parse(opts.GetValueOrDefault("rss-slack", "512")) << 20;
string vectors = opts.GetValueOrDefault("vectors") ?? FindVectors();
Console.WriteLine($"fuzz: seed {seed}, {duration} s, {lanes} lanes, corpus {vectors}");

var errors = new ErrorCounter();
using var loggers = LoggerFactory.Create(b => b.AddProvider(errors).SetMinimumLevel(LogLevel.Error));
long unobserved = 0;
TaskScheduler.UnobservedTaskException += (_, e) => { Interlocked.Increment(ref unobserved); e.SetObserved(); };

const long Capacity = 64L << 20;
var node = new CacheNode(new NodeOptions
{
    Port = 0,
    Store = new StoreOptions { Capacity = Capacity, MaxValueBytes = 1L << 20, LeaseTimeout = TimeSpan.FromSeconds(2) },
    SharedMemory = OperatingSystem.IsLinux(),
    FrameTimeout = TimeSpan.FromSeconds(2),
    HandshakeTimeout = TimeSpan.FromSeconds(2),
    MaxMetaBytes = 1 << 20,
    MaxBufferedMetaBytes = 16L << 20,
    MaxLeasesPerConnection = 4096,
    AccessStatsCapacity = 1000,
}, loggers);
node.Start();
var problems = new List<string>();
var rng = new Random(seed);
// FrameMutator is not thread-safe: each lane gets its own.
var fuzzers = Enumerable.Range(0, lanes).Select(i => new FuzzLane(new FrameMutator(vectors, new Random(seed + 100 + i)), node.Port, new Random(seed + 1 + i))).ToList();
var good = new List<(GoodClient Client, KvStore Store)>();
foreach (var (kind, name) in new[] { (KvTransportKind.Tcp, "tcp"), (node.ShmToken is null ? KvTransportKind.Tcp : KvTransportKind.Shm, "shm") })
{
    var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", Transport = kind });
    good.Add((new GoodClient(store, name, rng.Next()), store));
}
long peakRss = 0;
var clock = Stopwatch.StartNew();
using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(duration)))
{
    var running = fuzzers.Select(f => Task.Run(() => f.RunAsync(stop.Token))).Concat(good.Select(g => Task.Run(() => g.Client.RunAsync(stop.Token)))).ToArray();
    while (!stop.IsCancellationRequested)
    {
        try { await Task.Delay(1000, stop.Token); } catch (OperationCanceledException) { }
        peakRss = Math.Max(peakRss, Process.GetCurrentProcess().WorkingSet64);
    }
    await Task.WhenAll(running);
}
foreach (var (_, store) in good) await store.DisposeAsync();

// Everything the fuzzing and good connections held must come back once they are gone.
var settle = Stopwatch.StartNew();
string Leftovers()
{
    var st = node.Store.GetStats();
    return $"{node.OpenConnections} connections, {st.Reservations} reservations, {st.ActiveLeases} leases, {node.ShmLeasesHeld} shm leases, {node.MetaBytesBuffered} metadata bytes";
}
bool Clean() => node.OpenConnections == 0 && node.Store.GetStats() is { Reservations: 0, ActiveLeases: 0 } && node.ShmLeasesHeld == 0 && node.MetaBytesBuffered == 0;
while (!Clean() && settle.Elapsed < TimeSpan.FromSeconds(20)) await Task.Delay(100);
if (!Clean()) problems.Add($"left on the node 20 s after the last connection closed: {Leftovers()}");

// The node still serves a fresh client.
await using (var probe = await KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", Transport = KvTransportKind.Tcp }))
{
    var value = new byte[4096];
    new Random(seed).NextBytes(value);
    if ((await probe.PutAsync([System.Text.Encoding.UTF8.GetBytes("probe")], [value]))[0] != KvStatus.Ok) problems.Add("the node refused a PUT after fuzzing");
    else if (await probe.GetAsync(System.Text.Encoding.UTF8.GetBytes("probe")) is not { } got || !got.AsSpan().SequenceEqual(value)) problems.Add("the node did not return a fresh value after fuzzing");
}
await node.StopAsync();

foreach (var (client, _) in good)
{
    if (client.WrongBytes > 0) problems.Add($"{client.WrongBytes} wrong reads: {client.FirstProblem}");
    if (client.Puts + client.Reads == 0) problems.Add("a good client did no work");
}
if (errors.Errors > 0) problems.Add($"the node logged {errors.Errors} errors: {string.Join(" | ", errors.First)}");
if (unobserved > 0) problems.Add($"{unobserved} unobserved task exceptions");
if (peakRss > Capacity + rssSlack) problems.Add($"peak RSS {peakRss >> 20} MiB exceeds the arena ({Capacity >> 20} MiB) + {rssSlack >> 20} MiB");

var c = node.Counters;
Console.WriteLine($"fuzz: {clock.Elapsed.TotalSeconds:0} s, {fuzzers.Sum(f => f.Connections):N0} connections, {fuzzers.Sum(f => f.Frames):N0} frames, " +
    $"{fuzzers.Sum(f => f.BytesSent) >> 10:N0} KiB sent, {fuzzers.Sum(f => f.BytesReceived) >> 10:N0} KiB received; node: {c.ProtocolErrors:N0} protocol errors, " +
    $"{c.ConnectionsTotal:N0} connections; peak RSS {peakRss >> 20} MiB");
foreach (var (client, _) in good)
    Console.WriteLine($"fuzz: good client: {client.Puts:N0} puts, {client.Reads:N0} reads ({client.Hits:N0} hits), {client.WrongBytes} wrong, {client.Errors} errors{(client.FirstProblem is null ? "" : " (" + client.FirstProblem + ")")}");
if (problems.Count == 0)
{
    Console.WriteLine($"fuzz: ok (seed {seed})");
    return 0;
}
foreach (var p in problems) Console.WriteLine($"fuzz: FAILED: {p}");
Console.WriteLine($"fuzz: reproduce with --seed {seed}");
return 1;

static string FindVectors()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        var path = Path.Combine(dir.FullName, "tests", "vectors", "frames.json");
        if (File.Exists(path)) return path;
    }
    throw new FileNotFoundException("tests/vectors/frames.json not found above the fuzzer; pass --vectors PATH");
}
