using System.Text;
using Kvasir.Client;
using Kvasir.Protocol;

namespace Kvasir.Cli;

/// <summary>put, get, exists, rm, stats, ping: one request each against a running node.</summary>
public static class ClientCommands
{
    public const string Help = """
        kvasir put    --server HOST:PORT [KEY SOURCE] KEY FILE   store FILE's bytes (FILE - = stdin); --ttl SEC: expire after SEC seconds (0 = never)
        kvasir get    --server HOST:PORT [KEY SOURCE] KEY [FILE] write the value to FILE or stdout; exit 1 on a miss
        kvasir exists --server HOST:PORT [KEY SOURCE] KEY...     print 1 (present) or 0 per key
        kvasir rm     --server HOST:PORT [KEY SOURCE] KEY...     remove keys; print each key's result (--prefix P / --all: kvasir ls --help)
        kvasir stats  --server HOST:PORT [KEY SOURCE]            print the node's counters
        kvasir ping   --server HOST:PORT [KEY SOURCE]            check the node answers
          --server defaults to 127.0.0.1:7380; --timeout SEC (default 30) bounds each request.
          KEY SOURCE, for a node with an auth key, first found wins: --auth-key-file PATH (mode 0600),
          KVASIR_AUTH_KEY, KVASIR_AUTH_KEY_FILE, or --auth-key HEX (visible to every user in ps).
          --transport auto|tcp|shm (default auto): values through the node's shared-memory arena
          when it is on this host, else TCP; shm fails with the reason instead of falling back.
          In a cluster, give --redis URL [--redis-ca PEM] [--cluster NAME] [--replicas R] instead of --server (or
          --server a:p,b:p for a static list): keys go to their nodes by rendezvous hashing;
          stats sums the nodes' counters (kvasir status shows them per node).
          Keys are UTF-8 text; prefix with hex: for binary keys (hex:00ff10).
          TLS (nodes started with --tls-cert): --tls-ca PEM|system (the CA that signs the nodes' certificates, or the
          system's roots) [--tls-server-name NAME (checked against the certificate; default the host connected to)]
          [--tls-cert PEM --tls-key PEM (this client's certificate, for nodes with --tls-client-ca)].
        """;

    /// <summary>The client TLS options; any of them turns TLS on.</summary>
    public static readonly string[] TlsOptionNames = ["tls-ca", "tls-server-name", "tls-cert", "tls-key"];

    /// <summary>Options every verb that talks to nodes accepts (declared after <see cref="TlsOptionNames"/>, which it includes).</summary>
    public static readonly string[] ConnectOptions = ["server", "auth-key", "auth-key-file", "redis", "redis-ca", "cluster", "replicas", "transport", .. TlsOptionNames];

    /// <summary>Client TLS from --tls-ca (PEM file or "system") / --tls-server-name / --tls-cert / --tls-key; null when none is given.</summary>
    public static KvTlsOptions? TlsOptions(CommandLine cl)
    {
        if (TlsOptionNames.All(n => cl.Get(n) is null)) return null;
        if ((cl.Get("tls-cert") is null) != (cl.Get("tls-key") is null)) throw new UsageException("--tls-cert and --tls-key go together");
        var ca = cl.Get("tls-ca");
        if (ca is null) throw new UsageException("TLS needs --tls-ca PEM (the CA that signs the nodes' certificates) or --tls-ca system (the system's roots)");
        var tls = new KvTlsOptions { CaFile = ca == "system" ? null : ca, ServerName = cl.Get("tls-server-name"), CertFile = cl.Get("tls-cert"), KeyFile = cl.Get("tls-key") };
        foreach (var (flag, file) in new[] { ("tls-ca", tls.CaFile), ("tls-cert", tls.CertFile), ("tls-key", tls.KeyFile) })
            if (file is not null && !File.Exists(file)) throw new UsageException($"--{flag}: file '{file}' does not exist");
        return tls;
    }

    private static readonly string[] ValueOptions = [.. ConnectOptions, "timeout", "ttl", "prefix"];

    /// <summary>Store options from --server / --redis / --cluster / --replicas / --auth-key; bad values are usage errors.</summary>
    public static KvStoreOptions StoreOptions(CommandLine cl, string clientName, int connections, TimeSpan? timeout = null, bool sendValueCrc = true,
        bool inlineCompletions = false, bool? verifyValueCrc = null, long? stripeBytes = null)
    {
        var redis = cl.Get("redis");
        var server = cl.Get("server", "127.0.0.1:7380");
        var authKey = AuthKeySource.Resolve(cl);
        if (redis is not null && cl.Get("server") is not null) throw new UsageException("give --server or --redis, not both");
        if (redis is null && (cl.Get("cluster") ?? cl.Get("redis-ca")) is not null) throw new UsageException($"--{(cl.Get("cluster") is null ? "redis-ca" : "cluster")} needs --redis");
        if (redis is not null)
        {
            try { Kvasir.Cluster.RedisUrl.Parse(redis, cl.Get("redis-ca")); Kvasir.Cluster.RedisClusterRegistry.ValidateClusterName(cl.Get("cluster", "default")); }
            catch (FormatException ex) { throw new UsageException($"--redis: {ex.Message}"); }
        }
        else
        {
            foreach (var one in server.Split(',', StringSplitOptions.TrimEntries)) CheckServerAndKey(one, authKey);
        }
        return new KvStoreOptions
        {
            Server = server,
            RedisUrl = redis,
            RedisCaFile = cl.Get("redis-ca"),
            Cluster = cl.Get("cluster", "default"),
            Replicas = cl.Int("replicas", 0, 1, 16),   // 0: the cluster's setting (kvasir cluster set replicas=N), else 1
            AuthKey = authKey,
            Tls = TlsOptions(cl),
            RequestTimeout = timeout ?? TimeSpan.FromSeconds(30),
            ConnectionsPerNode = connections,
            StripeBytes = stripeBytes ?? new KvStoreOptions().StripeBytes,
            ClientName = clientName,
            SendValueCrc = sendValueCrc,
            InlineCompletions = inlineCompletions,
            VerifyValueCrc = verifyValueCrc ?? new KvStoreOptions().VerifyValueCrc,
            Transport = cl.Get("transport", "auto") switch
            {
                "auto" => KvTransportKind.Auto,
                "tcp" => KvTransportKind.Tcp,
                "shm" => KvTransportKind.Shm,
                var t => throw new UsageException($"--transport must be auto, tcp or shm (got '{t}')"),
            },
        };
    }

    public static async Task<int> RunAsync(string verb, IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, ["all"]);
        var p = cl.Positionals;
        bool byPrefix = cl.Get("prefix") is not null || cl.Has("all");
        if (verb != "put" && cl.Get("ttl") is not null) throw new UsageException("--ttl goes with put");
        if (verb != "rm" && byPrefix) throw new UsageException("--prefix and --all go with rm");
        if (byPrefix && (p.Count > 0 || (cl.Get("prefix") is not null && cl.Has("all"))))
            throw new UsageException("rm takes KEY..., or --prefix P, or --all: one of them");
        if (cl.Get("prefix") is "") throw new UsageException("rm --prefix needs a non-empty prefix (--all removes every key)");
        var ttl = KeyOptions.ParseTtlOrZero(cl.Get("ttl"));
        switch (verb)
        {
            case "put" when p.Count != 2: throw new UsageException("put needs KEY and FILE (- for stdin)");
            case "get" when p.Count is < 1 or > 2: throw new UsageException("get needs KEY and optionally FILE");
            case "exists" or "rm" when p.Count == 0 && !byPrefix: throw new UsageException($"{verb} needs at least one KEY");
            case "stats" or "ping" when p.Count != 0: throw new UsageException($"{verb} takes no arguments");
        }
        var options = StoreOptions(cl, "kvasir-cli", 1, TimeSpan.FromSeconds(cl.Int("timeout", 30, 1)));
        await using var store = await KvStore.ConnectAsync(options);
        await NoNodeCheck.RequireNodeAsync(store);
        switch (verb)
        {
            case "put":
                {
                    var key = Key(p[0]);
                    // A file over the node's limit is refused before it is read (it may be far larger than memory).
                    if (p[1] != "-" && FileLength(p[1]) is long length && length > store.MaxValueBytes)
                        return Fail(TooLarge(p[0], p[1], length, store.MaxValueBytes));
                    byte[] value = p[1] == "-" ? await ReadStdinAsync() : await ReadFileAsync(p[1]);
                    var status = (await store.PutAsync([key], [value], ttl is null ? null : new PutOptions { Ttl = ttl }))[0];
                    if (status == KvStatus.Ok && store.IsCluster) Console.Error.WriteLine($"stored on {string.Join(", ", store.Placement(key.Span))}");
                    if (status == KvStatus.ValueTooLarge) return Fail(TooLarge(p[0], p[1] == "-" ? "stdin" : p[1], value.Length, store.MaxValueBytes));
                    if (status == KvStatus.QuotaExceeded) return Fail($"put {Short(p[0])}: {await store.QuotaMessageAsync(key)}");
                    if (status != KvStatus.Ok) return Fail($"put {Short(p[0])}: {status}");
                    return 0;
                }
            case "get":
                {
                    var value = await store.GetAsync(Key(p[0]));
                    if (value is null)
                    {
                        Console.Error.WriteLine($"kvasir: {p[0]}: not found");
                        return 1;
                    }
                    if (p.Count == 2) await WriteFileAsync(p[1], value);
                    else
                    {
                        using var stdout = Console.OpenStandardOutput();
                        await stdout.WriteAsync(value);
                    }
                    return 0;
                }
            case "exists":
                {
                    var present = await store.ExistsAsync(p.Select(Key).ToArray());
                    foreach (var v in present) Console.WriteLine(v);
                    return present.Contains(-1) ? 3 : 0;
                }
            case "rm" when byPrefix:
                {
                    long removed;
                    try { removed = cl.Has("all") ? await store.RemoveAllAsync() : await store.RemovePrefixAsync(Key(cl.Get("prefix")!)); }
                    catch (ArgumentException ex) { throw new UsageException(KeyCommands.OneLine(ex)); }
                    Console.WriteLine($"removed {removed} keys");
                    return 0;
                }
            case "rm":
                {
                    var results = await store.RemoveAsync(p.Select(Key).ToArray());
                    for (int i = 0; i < p.Count; i++) Console.WriteLine($"{p[i]}\t{results[i]}");
                    return results.All(r => r is KvStatus.Ok or KvStatus.NotFound) ? 0 : 3;
                }
            case "stats":
                foreach (var (name, value) in (await store.StatsAsync()).OrderBy(s => s.Key, StringComparer.Ordinal))
                    Console.WriteLine($"{name}\t{value}");
                return 0;
            case "ping":
                {
                    var started = System.Diagnostics.Stopwatch.GetTimestamp();
                    await store.PingAsync();
                    Console.WriteLine($"pong from {store.NodeId} in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:F2} ms");
                    return 0;
                }
            default:
                throw new UsageException($"unknown verb '{verb}'");
        }
    }

    /// <summary>Bad --server or --auth-key values are usage errors (exit 2), not node errors.</summary>
    public static void CheckServerAndKey(string server, string? authKey)
    {
        HostPort.Parse(server, "server");
        CheckKey(authKey);
    }

    private static void CheckKey(string? authKey)
    {
        if (authKey is null) return;
        try { Kvasir.Protocol.AuthHandshake.ParseKey(authKey); }
        catch (FormatException ex) { throw new UsageException($"--auth-key: {ex.Message}"); }
    }

    /// <summary>A key from the command line: UTF-8 text, or hex:… for binary keys; 1 to 512 bytes (a usage error otherwise).</summary>
    public static ReadOnlyMemory<byte> Key(string text)
    {
        byte[] key;
        if (text.StartsWith("hex:", StringComparison.Ordinal))
        {
            try { key = Convert.FromHexString(text[4..]); }
            catch (FormatException) { throw new UsageException($"key '{Short(text)}' is not valid hex"); }
        }
        else key = Encoding.UTF8.GetBytes(text);
        if (key.Length is 0 or > ProtocolLimits.MaxKeyBytes)
            throw new UsageException(key.Length == 0 ? $"key '' is 0 bytes: keys are 1 to {ProtocolLimits.MaxKeyBytes} bytes"
                : $"key '{Short(text)}' is {key.Length} bytes: keys are 1 to {ProtocolLimits.MaxKeyBytes} bytes (the {ProtocolLimits.MaxKeyBytes}-byte key limit)");
        return key;
    }

    /// <summary>A key as messages show it: at most 40 characters (a long key is cut, with its length named elsewhere).</summary>
    public static string Short(string text) => text.Length <= 40 ? text : text[..32] + "…";

    private static string TooLarge(string key, string source, long length, long limit)
        => $"put {Short(key)}: {source} is {ByteSize.Approx(length)}, over the node's value limit of {ByteSize.Format(limit)} (raise it with kvasir serve --max-value)";

    private static long? FileLength(string path)
    {
        try { return new FileInfo(path).Length; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    private static async Task<byte[]> ReadFileAsync(string path)
    {
        try { return await File.ReadAllBytesAsync(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException($"cannot read {path}: {ex.Message}"); }
    }

    private static async Task WriteFileAsync(string path, byte[] value)
    {
        try { await File.WriteAllBytesAsync(path, value); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException($"cannot write {path}: {ex.Message}"); }
    }

    private static async Task<byte[]> ReadStdinAsync()
    {
        using var stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        await stdin.CopyToAsync(buffer);
        return buffer.ToArray();
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"kvasir: {message}");
        return 3;
    }
}
