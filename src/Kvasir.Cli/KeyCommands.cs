using System.Text;
using Kvasir.Client;

namespace Kvasir.Cli;

/// <summary>ls and info: key management against a running node or cluster (rm --prefix lives with rm in <see cref="ClientCommands"/>).</summary>
public static class KeyCommands
{
    public const string Help = """
        kvasir ls   --server HOST:PORT [KEY SOURCE] [PREFIX] [--page-size N] [--limit N]
                    list keys starting with PREFIX (default: every key), one "KEY<TAB>BYTES" line each, fetched a page
                    (default 1000, at most the node's batch limit) at a time; a last line on stderr says how many and which
                    tiers were listed (dram: keys only on disk or the shared tier are not listed). --limit stops after N keys.
        kvasir info --server HOST:PORT [KEY SOURCE] KEY...
                    per key: tier, bytes, age, ttl, pins, leases, namespace (DRAM bytes used/budget); exit 1 when a key is missing
        kvasir rm   --server HOST:PORT [KEY SOURCE] --prefix P | --all
                    remove every key starting with P (every key with --all) from every tier, on every node of a cluster
          Connection options as for put/get (kvasir put --help).
        """;

    public static async Task<int> RunAsync(string verb, IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, [.. ClientCommands.ConnectOptions, "timeout", "page-size", "limit"], []);
        var p = cl.Positionals;
        if (verb == "ls" && p.Count > 1) throw new UsageException("ls takes at most one PREFIX");
        if (verb == "info" && p.Count == 0) throw new UsageException("info needs at least one KEY");
        int pageSize = cl.Int("page-size", 1000, 1, 1 << 20);
        long limit = cl.Int("limit", int.MaxValue, 1);
        var options = ClientCommands.StoreOptions(cl, "kvasir-cli", 1, TimeSpan.FromSeconds(cl.Int("timeout", 30, 1)));
        await using var store = await KvStore.ConnectAsync(options);
        await NoNodeCheck.RequireNodeAsync(store);
        try
        {
            return verb == "ls" ? await ListAsync(store, p.Count == 1 ? ClientCommands.Key(p[0]) : default, pageSize, limit) : await InfoAsync(store, p);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(OneLine(ex));
        }
    }

    /// <summary>An argument error's message without the "(Parameter 'x')" tail.</summary>
    public static string OneLine(ArgumentException ex) => ex.ParamName is null ? ex.Message : ex.Message.Replace($" (Parameter '{ex.ParamName}')", "", StringComparison.Ordinal);

    private static async Task<int> ListAsync(KvStore store, ReadOnlyMemory<byte> prefix, int pageSize, long limit)
    {
        long listed = 0;
        byte[] cursor = [];
        string tiers = "dram";
        do
        {
            var page = await store.ScanAsync(prefix, cursor, pageSize);
            tiers = page.Tiers;
            foreach (var entry in page.Keys)
            {
                if (listed == limit) break;
                Console.WriteLine($"{Show(entry.Key)}\t{entry.Length}");
                listed++;
            }
            cursor = page.Cursor;
        }
        while (cursor.Length > 0 && listed < limit);
        Console.Error.WriteLine($"{listed} keys{(cursor.Length > 0 ? " (stopped at --limit)" : "")}; tiers listed: {tiers}");
        return 0;
    }

    private static async Task<int> InfoAsync(KvStore store, IReadOnlyList<string> keys)
    {
        var infos = await store.InfoAsync(keys.Select(ClientCommands.Key).ToArray());
        int rc = 0;
        for (int i = 0; i < keys.Count; i++)
        {
            var info = infos[i];
            if (info.Status != KvStatus.Ok)
            {
                Console.WriteLine($"{keys[i]}\t{info.Status}");
                rc = Math.Max(rc, info.Status == KvStatus.NotFound ? 1 : 3);
                continue;
            }
            var ns = info.Namespace is null ? "none" : $"{Show(info.Namespace)} ({info.NamespaceUsed}/{info.NamespaceBudget} DRAM bytes)";
            var ttl = info.Ttl is { } t ? $"{Math.Ceiling(t.TotalSeconds):F0}s" : "none";
            Console.WriteLine($"{keys[i]}\ttier={info.Tier} bytes={info.Length} age={info.Age.TotalSeconds:F1}s ttl={ttl} pins={info.Pins} leases={info.Leases} namespace={ns} node={info.Node}");
        }
        return rc;
    }

    /// <summary>A key as text when it is printable UTF-8, else hex:… (what the CLI accepts back).</summary>
    public static string Show(byte[] key)
    {
        try
        {
            var text = new UTF8Encoding(false, true).GetString(key);
            if (!text.Any(char.IsControl) && !text.StartsWith("hex:", StringComparison.Ordinal)) return text;
        }
        catch (DecoderFallbackException)
        {
        }
        return "hex:" + Convert.ToHexString(key).ToLowerInvariant();
    }
}
