using System.Net.Http.Headers;
using Kvasir.Cli.Stats;
using Kvasir.Protocol.Stats;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir stats</c>: with no subcommand, a node's counters (<see cref="ClientCommands"/>); with one, the access
/// statistics file (schema v1, docs/engine-side.md): demo, summary, visualize, export.
/// </summary>
public static class StatsCommand
{
    public const string Help = """
        kvasir stats  --server HOST:PORT [--auth-key-file PATH]      print the node's counters (see kvasir get --help)
        kvasir stats demo --num-accesses N --output FILE [--seed S]
            write a synthetic access statistics file: Zipf-shared prefixes, multi-turn conversations whose later
            turns reuse the earlier turns' blocks, a DRAM LRU (256 blocks) over a disk LRU (1024) deciding hits,
            16 tokens and 2 MiB per block, 8 requests/s. Same seed, same file.
        kvasir stats summary --input FILE
            print the summary: accesses, hit rate, unique blocks, reuse distance p50/p90/p99, tiers, hottest blocks.
        kvasir stats visualize --input FILE --output IMAGE.png [--type heatmap|timeline|reuse|hitrate|all] [--summary]
            draw PNG images (1200x700). heatmap (default): the 40 hottest blocks x time; hitrate: hit rate per
            interval and cumulative; reuse: reuse-distance histogram; timeline: accesses per second, hits on misses.
            With --type all, --output X.png writes X-heatmap.png, X-hitrate.png, X-reuse.png and X-timeline.png.
            --summary also prints the summary.
        kvasir stats export --server HOST:PORT --output FILE [--admin HOST:PORT] [--auth-key-file PATH] [--last N]
            fetch a node's recorded accesses (admin GET /v1/access-stats; the last 100,000 GET/LEASE keys by
            default, serve --access-stats) and write them as the file, source "node:ID". The admin address is
            --admin, else the --server host at port + 1 (as kvasir serve binds it). --last N keeps the newest N.
          FILE is the access statistics file, schema v1 (JSON). A missing or invalid file, or another schema or a
          newer version, is one line on stderr and exit code 2.
        """;

    private static readonly string[] Subcommands = ["demo", "summary", "visualize", "export"];

    /// <summary>True when the arguments name a subcommand (else they are the client verb's: the node's counters).</summary>
    public static bool IsSubcommand(IReadOnlyList<string> args) => args.Count > 0 && Subcommands.Contains(args[0]);

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var sub = args[0];
        var rest = args.Skip(1).ToList();
        try
        {
            switch (sub)
            {
                case "demo":
                    {
                        var cl = Parse(rest, ["num-accesses", "output", "seed"], []);
                        var output = Required(cl, "output");
                        var file = StatsDemo.Generate(new DemoSettings
                        {
                            Accesses = cl.Int("num-accesses", 1000, 0, 50_000_000),
                            Seed = cl.Int("seed", 1),
                        }, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                        Write(file, output);
                        var s = file.Summary();
                        Console.WriteLine($"wrote {output}: {s.TotalAccesses} accesses, {s.UniqueBlocks} blocks, hit rate {100 * s.HitRate:F1} %");
                        return 0;
                    }
                case "summary":
                    {
                        var cl = Parse(rest, ["input"], []);
                        Console.WriteLine(AccessStatsFile.Read(Required(cl, "input")).SummaryText());
                        return 0;
                    }
                case "visualize":
                    {
                        var cl = Parse(rest, ["input", "output", "type"], ["summary"]);
                        var input = Required(cl, "input");
                        var output = Required(cl, "output");
                        var type = cl.Get("type", "heatmap");
                        if (type != "all" && !StatsPlots.Types.Contains(type))
                            throw new UsageException($"--type must be heatmap, timeline, reuse, hitrate or all (got '{type}')");
                        var file = AccessStatsFile.Read(input);
                        var targets = type == "all"
                            ? StatsPlots.Types.Select(t => (t, Path.Combine(Path.GetDirectoryName(output) ?? "", $"{Path.GetFileNameWithoutExtension(output)}-{t}{Extension(output)}"))).ToList()
                            : [(type, output)];
                        foreach (var (t, path) in targets)
                        {
                            try { StatsPlots.Draw(file, t, path); }
                            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException($"cannot write {path}: {ex.Message}"); }
                            catch (TypeInitializationException ex) when (ex.GetBaseException() is DllNotFoundException)
                            {
                                // The native AOT binary cannot carry SkiaSharp's native libraries inside: ./kvasir publish puts them beside it.
                                throw new UsageException($"cannot draw: libSkiaSharp.so and libHarfBuzzSharp.so must be beside {Environment.ProcessPath} (./kvasir publish DIR writes them there; docs/deploy.md)");
                            }
                            Console.WriteLine($"wrote {path} ({t})");
                        }
                        if (cl.Has("summary")) Console.WriteLine(file.SummaryText());
                        return 0;
                    }
                default:
                    return await ExportAsync(rest);
            }
        }
        catch (AccessStatsFormatException ex)
        {
            throw new UsageException(ex.Message);
        }
    }

    private static async Task<int> ExportAsync(List<string> args)
    {
        var cl = Parse(args, ["server", "admin", "auth-key", "auth-key-file", "output", "last", "timeout"], []);
        var output = Required(cl, "output");
        var server = cl.Get("server", "127.0.0.1:7380");
        var authKey = AuthKeySource.Resolve(cl);
        ClientCommands.CheckServerAndKey(server, authKey);
        string admin;
        if (cl.Get("admin") is { } given)
        {
            ClientCommands.CheckServerAndKey(given, null);
            admin = given;
        }
        else
        {
            var (host, port) = HostPort.Parse(server, "server");
            if (port == 65535) throw new UsageException("--server port 65535 has no port + 1; give --admin HOST:PORT");
            admin = $"{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{port + 1}";
        }
        var url = $"http://{admin}/v1/access-stats" + (cl.Get("last") is not null ? $"?last={cl.Int("last", 0, 0)}" : "");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(cl.Int("timeout", 30, 1)) };
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (authKey is { } key)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Kvasir.Server.Admin.AdminServer.Token(Kvasir.Protocol.AuthHandshake.ParseKey(key)));
        byte[] body;
        try
        {
            using var response = await http.SendAsync(request);
            body = await response.Content.ReadAsByteArrayAsync();
            if (!response.IsSuccessStatusCode)
                throw new Kvasir.Client.KvasirException($"{url}: HTTP {(int)response.StatusCode} {System.Text.Encoding.UTF8.GetString(body).Trim()}");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            throw new Kvasir.Client.KvasirException($"cannot fetch {url}: {ex.Message}");
        }
        AccessStatsFile file;
        try { file = AccessStatsFile.Parse(body); }
        catch (AccessStatsFormatException ex) { throw new Kvasir.Client.KvasirException($"{url} did not answer an access statistics file: {ex.Message}"); }
        Write(file, output);
        var s = file.Summary();
        Console.WriteLine($"wrote {output}: {s.TotalAccesses} accesses from {file.Source} ({file.Dropped} dropped), hit rate {100 * s.HitRate:F1} %");
        return 0;
    }

    private static CommandLine Parse(List<string> args, string[] values, string[] flags)
    {
        var cl = CommandLine.Parse(args, values, flags);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        return cl;
    }

    private static string Required(CommandLine cl, string name) => cl.Get(name) ?? throw new UsageException($"--{name} is required");

    private static string Extension(string path) => Path.GetExtension(path) is { Length: > 0 } e ? e : ".png";

    private static void Write(AccessStatsFile file, string path)
    {
        try { file.Write(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException($"cannot write {path}: {ex.Message}"); }
    }
}
