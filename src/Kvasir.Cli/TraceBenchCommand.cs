using System.Globalization;
using System.Text.Json.Nodes;
using Kvasir.Cli.Bench;
using Kvasir.Cli.Bench.Trace;
using Kvasir.Client;
using Kvasir.Embedded;
using Kvasir.Server;
using Kvasir.Storage;
using Spectre.Console;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir bench --trace FILE</c>: replays a Mooncake-format request trace, offline against every eviction policy
/// and the Belady bound (<c>--simulate</c>), or against a live target (a Kvasir node, an in-process node, Redis or
/// memcached), reporting the prefix hits and the prefill tokens they save.
/// </summary>
public static class TraceBenchCommand
{
    public const string Help = """

        kvasir bench --trace FILE [options]   replay a Mooncake-format trace (timestamp, input_length, output_length, hash_ids)

          --simulate            offline: every policy and the Belady bound at each --capacity, in this process
          --capacity LIST       cache size: N% of the trace's unique blocks, or N blocks    default 1%,5%,10%,25%,50%
          --policy LIST         policies to simulate, or the inproc node's                   default all (inproc: chainlfu)
          --requests N          replay only the first N requests                             default all
          --block-bytes SIZE    bytes per 512-token block in a live replay (scaled down)      default 16KiB
          --speed X             live replay: X times the trace's pace; 0 = as fast as possible default 0
          --target T            live replay: kvasir (--server) | inproc | redis | memcached    default kvasir
          --plan                print the node flags for --capacity and exit
          --json                one JSON object per result
        """;

    private static readonly string[] ValueOptions =
        [.. ClientCommands.ConnectOptions, "trace", "target", "capacity", "policy", "requests", "block-bytes", "speed"];

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, ["simulate", "json", "no-progress", "plan"]);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        string path = cl.Get("trace")!;
        if (!File.Exists(path)) throw new UsageException($"--trace: no file '{path}'");
        int? limit = cl.Get("requests") is null ? null : cl.Int("requests", 0, 1);
        List<TraceRequest> requests;
        try { requests = TraceFile.Read(path, limit); }
        catch (FormatException ex) { throw new UsageException($"--trace: {ex.Message}"); }
        if (requests.Count == 0) throw new UsageException($"--trace: '{path}' holds no requests");
        int unique = TraceFile.UniqueBlocks(requests);
        var capacities = ParseCapacities(cl.Get("capacity", "1%,5%,10%,25%,50%"), unique);
        bool json = cl.Has("json");
        long blockBytes = cl.Size("block-bytes", 16 << 10);
        if (blockBytes is < 64 or > 64L << 20) throw new UsageException("--block-bytes: must be 64 B..64 MiB");

        if (cl.Has("plan"))
        {
            foreach (var (label, blocks) in capacities)
                Console.WriteLine($"capacity {label}: {blocks} blocks = {blocks * blockBytes} bytes: --memory {blocks * blockBytes} --block-size {blockBytes} --max-value {blockBytes} --high-watermark 1 --low-watermark 1");
            return 0;
        }
        if (cl.Has("simulate")) return Simulate(cl, requests, unique, capacities, json);

        if (capacities.Count != 1) throw new UsageException("--capacity: a live replay takes one capacity (the node's size)");
        return await ReplayAsync(cl, requests, unique, capacities[0], (int)blockBytes, json);
    }

    private static int Simulate(CommandLine cl, List<TraceRequest> requests, int unique, List<(string Label, long Blocks)> capacities, bool json)
    {
        var policies = cl.Get("policy") is { } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n => EvictionNames.Parse(n, "policy")).ToList()
            : EvictionNames.All.Select(p => p.Kind).ToList();
        var rows = policies.Select(p => EvictionNames.NameOf(p)).Append("belady").ToList();
        var results = new TraceHits[rows.Count, capacities.Count];
        var started = DateTime.UtcNow;
        var jobs = Enumerable.Range(0, rows.Count).SelectMany(r => Enumerable.Range(0, capacities.Count).Select(c => (r, c))).ToList();
        Parallel.ForEach(jobs, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, job =>
        {
            long blocks = capacities[job.c].Blocks;
            results[job.r, job.c] = job.r < policies.Count
                ? TraceSimulator.Run(requests, policies[job.r], blocks)
                : TraceSimulator.Belady(requests, blocks);
        });
        double seconds = (DateTime.UtcNow - started).TotalSeconds;
        if (json)
        {
            for (int r = 0; r < rows.Count; r++)
                for (int c = 0; c < capacities.Count; c++)
                {
                    var h = results[r, c];
                    var row = new JsonObject
                    {
                        ["policy"] = rows[r],
                        ["capacity"] = capacities[c].Label,
                        ["capacity_blocks"] = capacities[c].Blocks,
                        ["unique_blocks"] = unique,
                    };
                    AddHits(row, h);
                    row["evictions"] = h.Evictions;
                    Console.WriteLine(row.ToJsonString());
                }
            return 0;
        }
        Console.WriteLine($"{requests.Count} requests, {requests.Sum(r => (long)r.Blocks.Length)} prompt blocks, {unique} unique; prefix-block hit rate by capacity (share of unique blocks); {seconds:F1} s");
        Console.WriteLine($"{"policy",-10}" + string.Concat(capacities.Select(c => $"{c.Label + " (" + c.Blocks + ")",16}")));
        for (int r = 0; r < rows.Count; r++)
            Console.WriteLine($"{rows[r],-10}" + string.Concat(Enumerable.Range(0, capacities.Count).Select(c => $"{results[r, c].HitRate * 100,15:F1}%")));
        return 0;
    }

    /// <summary>The hit counts both JSON rows (simulator and replay) carry, in their order.</summary>
    private static void AddHits(JsonObject row, TraceHits h)
    {
        row["requests"] = h.Requests;
        row["blocks"] = h.Blocks;
        row["hit_blocks"] = h.HitBlocks;
        row["hit_rate"] = h.HitRate;
        row["input_tokens"] = h.InputTokens;
        row["tokens_saved"] = h.TokensSaved;
    }

    private static async Task<int> ReplayAsync(CommandLine cl, List<TraceRequest> requests, int unique, (string Label, long Blocks) capacity, int blockBytes, bool json)
    {
        string targetName = cl.Get("target", "kvasir");
        if (targetName is not ("kvasir" or "inproc" or "redis" or "memcached"))
            throw new UsageException($"--target: '{targetName}' is not kvasir, inproc, redis or memcached");
        double speed = cl.Double("speed", 0);
        if (speed is < 0 or > 1e6) throw new UsageException("--speed: must be 0 (as fast as possible) or a positive factor up to 1e6");
        var policy = targetName == "inproc" ? EvictionNames.Parse(cl.Get("policy", "chainlfu"), "policy") : (EvictionPolicyKind?)null;
        if (targetName != "inproc" && cl.Get("policy") is not null) throw new UsageException("--policy: the node's policy is its own (serve --eviction); only --target inproc or --simulate take one");
        string server = cl.Get("server", "127.0.0.1:7380");
        if (targetName is "redis" or "memcached") ClientCommands.CheckServerAndKey(server, cl.Get("auth-key"));
        await using var store = targetName switch
        {
            "kvasir" => await KvStore.ConnectAsync(ClientCommands.StoreOptions(cl, "kvasir-trace", 2)),
            "inproc" => EmbeddedKvStore.Start(new NodeOptions { Port = 0, Store = TraceSimulator.StoreFor(capacity.Blocks, blockBytes, policy!.Value) }),
            _ => null,
        };
        var (host, port) = targetName is "redis" or "memcached" ? HostPort.Parse(server, "server") : (server, 0);
        await using IBenchTarget target = targetName switch
        {
            "kvasir" or "inproc" => new KvasirTarget(store!),
            "redis" => await RespTarget.ConnectAsync(host, port),
            _ => await MemcachedTarget.ConnectAsync(host, port),
        };
        long evictionsBefore = store is null ? 0 : (await store.StatsAsync()).GetValueOrDefault("evictions");
        var replay = new TraceReplay(requests, blockBytes, speed);
        bool progress = !json && !cl.Has("no-progress") && !Console.IsOutputRedirected;
        var result = progress ? await WithProgressAsync(replay, target, requests.Count) : await replay.RunAsync(target);
        long? evictions = store is null ? null : (await store.StatsAsync()).GetValueOrDefault("evictions") - evictionsBefore;
        var h = result.Hits;
        string name = targetName == "inproc" ? $"inproc/{EvictionNames.NameOf(policy!.Value)}" : targetName;
        if (json)
        {
            var row = new JsonObject
            {
                ["target"] = name,
                ["transport"] = target.Transport,
                ["capacity"] = capacity.Label,
                ["capacity_blocks"] = capacity.Blocks,
                ["block_bytes"] = blockBytes,
            };
            AddHits(row, h);
            row["bytes_read"] = result.BytesRead;
            row["bytes_written"] = result.BytesWritten;
            row["get_gbps"] = result.GetGBps;
            row["put_gbps"] = result.PutGBps;
            row["lookup_p50_us"] = result.LookupMicros(0.5);
            row["lookup_p99_us"] = result.LookupMicros(0.99);
            row["evictions"] = evictions;
            row["errors"] = result.Errors;
            row["seconds"] = result.WallSeconds;
            Console.WriteLine(row.ToJsonString());
        }
        else
        {
            Console.WriteLine($"{name} over {target.Transport}: {h.Requests} requests, capacity {capacity.Label} ({capacity.Blocks} blocks of {ByteSize.Format(blockBytes)}, {unique} unique)");
            Console.WriteLine($"  prefix-block hit rate {h.HitRate * 100:F1}% ({h.HitBlocks} of {h.Blocks}); prefill tokens saved {h.TokensSaved} of {h.InputTokens} ({100.0 * h.TokensSaved / Math.Max(1, h.InputTokens):F1}%)");
            Console.WriteLine($"  moved {ByteSize.Format(result.BytesRead)} read at {result.GetGBps:F2} GB/s, {ByteSize.Format(result.BytesWritten)} written at {result.PutGBps:F2} GB/s; lookup p50 {result.LookupMicros(0.5):F0} us p99 {result.LookupMicros(0.99):F0} us");
            Console.WriteLine($"  evictions {(evictions is long e ? e.ToString(CultureInfo.InvariantCulture) : "n/a")}, errors {result.Errors}, {result.WallSeconds:F1} s ({h.Requests / Math.Max(1e-9, result.WallSeconds):F0} requests/s)");
        }
        return result.Errors > 0 ? 1 : 0;
    }

    private static async Task<TraceReplayResult> WithProgressAsync(TraceReplay replay, IBenchTarget target, int total)
    {
        TraceReplayResult? result = null;
        await AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("trace replay", maxValue: total);
                var run = replay.RunAsync(target);
                while (!run.IsCompleted)
                {
                    await Task.WhenAny(run, Task.Delay(250));
                    task.Value = replay.Done;
                }
                result = await run;
            });
        return result!;
    }

    /// <summary>"5%" of <paramref name="unique"/> blocks (rounded down, at least 1) or a block count.</summary>
    public static List<(string Label, long Blocks)> ParseCapacities(string text, int unique)
    {
        var list = new List<(string, long)>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item.EndsWith('%') && double.TryParse(item[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double pct) && pct > 0 && pct <= 100)
                list.Add((item, Math.Max(1, (long)(pct / 100 * unique))));
            else if (long.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out long blocks) && blocks >= 1)
                list.Add((item, blocks));
            else
                throw new UsageException($"--capacity: '{item}' is not a percentage (0-100%] of the unique blocks or a block count >= 1");
        }
        return list.Count > 0 ? list : throw new UsageException("--capacity: empty list");
    }
}
