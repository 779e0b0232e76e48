using Kvasir.Cli;
using Kvasir.Client;

const string Usage = """
    kvasir — a tiered, distributed KV-cache store for LLM inference

    usage: kvasir VERB [options]
      serve     run a cache node
      put get exists rm stats ping    talk to a running node (or a cluster: --redis URL)
      ls info  list keys by prefix (paged), per-key size/tier/age/ttl/pins; rm --prefix P | --all removes by prefix
      config    the effective serve configuration and where each value came from
      admin-token  the bearer token of the admin HTTP endpoints for an auth key
      keygen FILE  write a new random auth key to FILE (mode 0600) for --auth-key-file / KVASIR_AUTH_KEY_FILE
      status    a cluster's nodes (or one node): state, capacity, use, keys, hit ratio
      cluster   cluster-wide settings in the registry: kvasir cluster set replicas=2 --redis URL
      bench     load generator against a running node
      stats demo|summary|visualize|export   access statistics files: synthetic workload, summary, PNG plots, a node's export
      transfer-peer   the scripted transfer engine peer (docs/transfer.md § Interop peer)
      transfer-bench  transfer engine throughput and latency over loopback, by message size and lane count
    kvasir VERB --help for the verb's options; kvasir --version (also after any verb) for the version.
    """;

if (args is ["--version"] or ["version"] || (args.Length > 1 && args[1..].Contains("--version")))
{
    // on every verb path too (kvasir serve --version): what an operator checks before anything else
    Console.WriteLine(VersionInfo.Line);
    return 0;
}
if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}
var verb = args[0];
var rest = args[1..];
if (verb is "serve" or "bench" && Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    // Socket completions run on the epoll thread instead of hopping to the thread pool. Right for
    // these two verbs, whose continuations are our own non-blocking loops; read by the runtime when
    // the socket engine starts, so it must be set before the first socket. The library never sets it:
    // a user's continuation that blocks would stall every socket.
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}
if (rest.Contains("--help") || rest.Contains("-h"))
{
    Console.WriteLine(verb switch
    {
        "serve" => ServeCommand.Help,
        "bench" => BenchCommand.Help,
        "status" => StatusCommand.Help,
        "cluster" => ClusterCommand.Help,
        "config" => ConfigCommand.Help,
        "stats" => StatsCommand.Help,
        "transfer-peer" => TransferPeerCommand.Help,
        "transfer-bench" => TransferBenchCommand.Help,
        "put" or "get" or "exists" or "ping" => ClientCommands.Help,
        "ls" or "info" or "rm" => ClientCommands.Help + "\n" + KeyCommands.Help,
        _ => Usage,
    });
    return 0;
}
try
{
    return verb switch
    {
        "serve" => await ServeCommand.RunAsync(rest),
        "bench" => await BenchCommand.RunAsync(rest),
        "status" => await StatusCommand.RunAsync(rest),
        "cluster" => await ClusterCommand.RunAsync(rest),
        "config" => ConfigCommand.Run(rest),
        "admin-token" => ConfigCommand.AdminToken(rest),
        "keygen" => ConfigCommand.Keygen(rest),
        "transfer-peer" => await TransferPeerCommand.RunAsync(rest),
        "transfer-bench" => await TransferBenchCommand.RunAsync(rest),
        "stats" when StatsCommand.IsSubcommand(rest) => await StatsCommand.RunAsync(rest),
        "put" or "get" or "exists" or "rm" or "stats" or "ping" => await ClientCommands.RunAsync(verb, rest),
        "ls" or "info" => await KeyCommands.RunAsync(verb, rest),
        _ => throw new UsageException($"unknown verb '{verb}' (try kvasir --help)"),
    };
}
catch (UsageException ex)
{
    Console.Error.WriteLine($"kvasir {verb}: {ex.Message}");
    return 2;
}
catch (KvasirException ex)
{
    Console.Error.WriteLine($"kvasir {verb}: {ex.Message}");
    return 3;
}
