using System.Globalization;
using Kvasir.Cli.Bench;
using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;
using Spectre.Console;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir bench</c>: batch load against a Kvasir node, an in-process node, a plain memcpy table,
/// Redis or memcached, with one shape or a sweep of shapes. Every GET is verified unless --no-verify.
/// </summary>
public static class BenchCommand
{
    public const string Help = """
        kvasir bench [options]   batch load generator; lists (a,b,c) in --op, --value-size and --inflight run every combination

          --target T            kvasir | inproc (node in this process) | memcpy (floor) | redis | memcached   default kvasir
          --server HOST:PORT    the node or peer                                      default 127.0.0.1:7380
          --redis URL           kvasir target: a cluster's registry instead of --server (--cluster NAME, --replicas R)
          --auth-key HEX        Kvasir node's auth key                                default none
          --tls-ca PEM|system   kvasir target: TLS to the nodes (also --tls-server-name NAME, --tls-cert/--tls-key PEM)
          --transport T         kvasir target: auto | tcp | shm (shared memory, same host) default auto
          --op OPS              put | get | mixed | exists (get/mixed/exists pre-fill) default get
          --ratio F             mixed: fraction of requests that are GETs             default 0.9
          --value-size SIZES    bytes per value                                       default 1MiB
          --batch N             keys per request                                      default 16 MiB / value size, 1..64
          --inflight NS         requests in flight at once, one lane each             default 4
          --connections N       Kvasir TCP connections (peers: one per lane)          default the largest --inflight, at least 4
          --stripe SIZE         Kvasir over TCP: a batch of at least twice SIZE is split over the free
                                connections, SIZE or more each (KvStoreOptions.StripeBytes); 0: off
                                                                                      default 1MiB (0 under 4 cores)
          --keys N              key-space size                                        default --key-space / value size, 16..65536
          --key-space SIZE      bytes of values the key space holds                   default 256MiB
          --duration SEC        measured time per run                                 default 10
          --requests N          stop after N measured requests instead                default off
          --warmup SEC          unmeasured time before each run                       default 1
          --memory SIZE         arena of the inproc node                              default 1GiB
          --verify MODE         sample (head, a word per 4 KiB, tail) | full (every byte) | off   default sample
          --no-verify           same as --verify off
          --value-crc MODE      kvasir PUT checksums: client (the client computes each value's CRC-32C as
                                it sends it, CRC_TRAILER) | given (each value's CRC computed once, when the bench
                                makes it, and sent as the writer's own) | node (not sent: the node
                                checksums as it receives)                             default client
          --verify-crc on|off   kvasir GET: check each hit against the CRC-32C its node sent (KvStoreOptions.
                                VerifyValueCrc; a mismatch counts as an error)      default the client's default
          --chain               kvasir/inproc PUT: each batch declares its keys a chain (PutOptions.Chain), as the
                                engine connectors save; striped only where the node links late parents
          --no-prefill          do not write the key space before get/mixed/exists
          --no-progress         no live progress bar
          --json                one JSON object per run (one line each)
        """ + TraceBenchCommand.Help + ScaleBenchCommand.Help;

    private static readonly string[] ValueOptions =
        [.. ClientCommands.ConnectOptions, "target", "op", "ratio", "value-size", "batch", "inflight", "connections", "stripe", "keys", "duration", "requests", "warmup", "memory", "verify", "key-space", "value-crc", "verify-crc"];

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        if (args.Any(a => a == "--trace" || a.StartsWith("--trace=", StringComparison.Ordinal))) return await TraceBenchCommand.RunAsync(args);
        if (args.Contains("--scale")) return await ScaleBenchCommand.RunAsync(args);
        var cl = CommandLine.Parse(args, ValueOptions, ["no-verify", "no-prefill", "no-progress", "json", "chain"]);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        string targetName = cl.Get("target", "kvasir");
        if (targetName is not ("kvasir" or "inproc" or "memcpy" or "redis" or "memcached"))
            throw new UsageException($"--target: '{targetName}' is not kvasir, inproc, memcpy, redis or memcached");
        var ops = List(cl.Get("op", "get"), "op", o => BenchSettings.Ops.Contains(o) ? o : throw new UsageException($"--op: '{o}' is not put, get, mixed or exists"));
        var sizes = List(cl.Get("value-size", "1MiB"), "value-size", v => checked((int)ByteSize.Parse(v)));
        var inflights = List(cl.Get("inflight", "4"), "inflight", v => int.Parse(v, CultureInfo.InvariantCulture));
        if (sizes.Any(s => s is < 1 or > (1 << 30))) throw new UsageException("--value-size: each size must be 1 B..1 GiB");
        if (inflights.Any(n => n is < 1 or > 1024)) throw new UsageException("--inflight: each count must be 1..1024");
        double ratio = cl.Double("ratio", 0.9);
        if (ratio is < 0 or > 1) throw new UsageException("--ratio must be between 0 and 1");
        string server = cl.Get("server", "127.0.0.1:7380");
        if (targetName is "redis" or "memcached") ClientCommands.CheckServerAndKey(server, cl.Get("auth-key"));
        if (targetName is not "kvasir" && cl.Get("redis") is not null) throw new UsageException($"--redis applies to --target kvasir only");
        bool chain = cl.Has("chain");
        if (chain && targetName is not ("kvasir" or "inproc")) throw new UsageException($"--chain: {targetName} has no chains; it applies to --target kvasir or inproc");
        bool json = cl.Has("json");
        bool progress = !json && !cl.Has("no-progress") && !Console.IsOutputRedirected;
        var duration = Seconds(cl, "duration", 10);
        var warmup = Seconds(cl, "warmup", 1);
        long? requests = cl.Get("requests") is null ? null : cl.Int("requests", 0, 1);
        int connections = cl.Int("connections", Math.Max(inflights.Max(), new KvStoreOptions().ConnectionsPerNode), 1, 1024);
        long stripe = cl.Size("stripe", new KvStoreOptions().StripeBytes);
        var verify = cl.Has("no-verify") ? VerifyMode.Off : cl.Get("verify", "sample") switch
        {
            "sample" => VerifyMode.Sample,
            "full" => VerifyMode.Full,
            "off" => VerifyMode.Off,
            var other => throw new UsageException($"--verify: '{other}' is not sample, full or off"),
        };

        string valueCrc = cl.Get("value-crc", "client");
        if (valueCrc is not ("client" or "given" or "node")) throw new UsageException($"--value-crc: '{valueCrc}' is not client, given or node");
        bool? verifyCrc = cl.Get("verify-crc") switch
        {
            null => null,
            "on" => true,
            "off" => false,
            var other => throw new UsageException($"--verify-crc: '{other}' is not on or off"),
        };
        await using var kvasir = targetName switch
        {
            "kvasir" => await KvStore.ConnectAsync(ClientCommands.StoreOptions(cl, "kvasir-bench", connections, sendValueCrc: valueCrc != "node",
                // Every lane's continuation is a non-blocking loop (as with the socket engine's inline completions in
                // Program.cs): resuming it on the connection's reader saves a thread-pool hop per request.
                inlineCompletions: true, verifyValueCrc: verifyCrc, stripeBytes: stripe)),
            "inproc" => EmbeddedKvStore.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = cl.Size("memory", 1L << 30), MaxValueBytes = Math.Min(cl.Size("memory", 1L << 30), 1L << 30) } }),
            _ => null,
        };
        if (kvasir is not null) await NoNodeCheck.RequireNodeAsync(kvasir);
        // The peers' address (checked above for redis and memcached; a Kvasir target reads --server through its store options).
        var (host, port) = targetName is "redis" or "memcached" ? HostPort.Parse(server, "server") : (server, 0);
        bool failed = false;
        foreach (int size in sizes)
        {
            MemcpyTarget? table = null;
            foreach (var op in ops)
            {
                foreach (int inflight in inflights)
                {
                    var settings = new BenchSettings
                    {
                        Op = op,
                        ReadRatio = ratio,
                        ValueSize = size,
                        Inflight = inflight,
                        Batch = cl.Int("batch", Math.Clamp((16 << 20) / size, 1, 64), 1, 1_000_000),
                        Keys = cl.Int("keys", (int)Math.Clamp(cl.Size("key-space", 256L << 20) / size, 16, 65536), 1),
                        Duration = duration,
                        Warmup = warmup,
                        Requests = requests,
                        Verify = verify,
                        Prefill = !cl.Has("no-prefill"),
                    };
                    table ??= targetName == "memcpy" ? new MemcpyTarget(settings.Keys, size) : null;
                    Func<Task<IBenchTarget>> open = targetName switch
                    {
                        "kvasir" or "inproc" => () => Task.FromResult<IBenchTarget>(new KvasirTarget(kvasir!, givenCrcs: valueCrc == "given", chain: chain)),
                        "memcpy" => () => Task.FromResult<IBenchTarget>(table!),
                        "redis" => async () => await RespTarget.ConnectAsync(host, port),
                        _ => async () => await MemcachedTarget.ConnectAsync(host, port),
                    };
                    var runner = new BenchRunner(targetName, open, settings);
                    var result = progress ? await WithProgressAsync(runner, settings) : await runner.RunAsync();
                    Console.WriteLine(json ? result.ToJson() : result.Describe());
                    failed |= result.Errors + result.VerifyFailures > 0;
                }
            }
        }
        return failed ? 1 : 0;
    }

    /// <summary>Runs one benchmark with a live bar: elapsed share of the run and the current GB/s.</summary>
    private static async Task<BenchResult> WithProgressAsync(BenchRunner runner, BenchSettings s)
    {
        BenchResult? result = null;
        await AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask($"{s.Op} {ByteSize.Format(s.ValueSize)} x{s.Batch} inflight {s.Inflight}", maxValue: 1.0);
                var total = s.Warmup + s.Duration;
                var started = DateTime.UtcNow;
                var run = runner.RunAsync();
                long lastBytes = 0;
                var lastTime = started;
                while (!run.IsCompleted)
                {
                    await Task.WhenAny(run, Task.Delay(250));
                    var now = DateTime.UtcNow;
                    long bytes = runner.GoodBytes;
                    double gbps = (bytes - lastBytes) / Math.Max(1e-6, (now - lastTime).TotalSeconds) / 1e9;
                    (lastBytes, lastTime) = (bytes, now);
                    task.Description = $"{s.Op} {ByteSize.Format(s.ValueSize)} x{s.Batch} inflight {s.Inflight}: {gbps:F2} GB/s";
                    task.Value = s.Requests is null ? Math.Min(1.0, (now - started) / total) : task.Value;
                }
                task.Value = 1.0;
                result = await run;
            });
        return result!;
    }

    /// <summary>Kept for callers that drive a <see cref="KvStore"/> directly (tests, embedding programs).</summary>
    public static Task<BenchResult> RunAsync(KvStore store, string op, int valueSize, int batch, int inflight, int connections, int keyCount,
        TimeSpan duration, TimeSpan warmup, bool verify)
        => new BenchRunner("kvasir", () => Task.FromResult<IBenchTarget>(new KvasirTarget(store)),
            new BenchSettings { Op = op, ValueSize = valueSize, Batch = batch, Inflight = inflight, Keys = keyCount, Duration = duration, Warmup = warmup, Verify = verify ? VerifyMode.Sample : VerifyMode.Off })
            .RunAsync();

    private static List<T> List<T>(string text, string name, Func<string, T> parse)
    {
        try
        {
            var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToList();
            return items.Count > 0 ? items : throw new UsageException($"--{name}: empty list");
        }
        catch (Exception ex) when (ex is FormatException or OverflowException)
        {
            throw new UsageException($"--{name}: '{text}': {ex.Message}");
        }
    }

    private static TimeSpan Seconds(CommandLine cl, string name, double fallback)
    {
        double v = cl.Double(name, fallback);
        if (v < 0 || v > 86_400) throw new UsageException($"--{name}: must be 0..86400 seconds");
        return TimeSpan.FromSeconds(v);
    }
}
