namespace Kvasir.Cli;

/// <summary><c>kvasir config</c>: the effective serve configuration and where each value came from.</summary>
public static class ConfigCommand
{
    public const string Help = """
        kvasir config [--config FILE] [serve options]   print the effective configuration of kvasir serve:
          every option, its value and its source (default, file PATH, env KVASIR_X, flag). The same checks
          as serve run first: a bad value is a one-line error and exit 2.
        """;

    public static int Run(IReadOnlyList<string> args)
    {
        var (resolved, effective) = ConfigChain.Resolve(args);
        ConfigChain.Parse(resolved, effective, a => (ServeCommand.ParseOptions(a), ServeCommand.ParseLogLevel(a)));   // the checks serve runs
        int w = effective.Max(s => s.Option.Name.Length);
        int v = effective.Max(s => (s.Value ?? s.Option.Default).Length);
        foreach (var s in effective)
        {
            var value = s.Option.Name == "auth-key" && s.Value is not null ? "(set, 64 hex chars)" : s.Value ?? s.Option.Default;
            Console.WriteLine($"{s.Option.Name.PadRight(w)}  {value.PadRight(Math.Max(v, 19))}  {s.Source}");
        }
        return 0;
    }

    /// <summary><c>kvasir admin-token --auth-key HEX</c>: the bearer token of the admin endpoints (docs/operations.md).</summary>
    public static int AdminToken(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ["auth-key"], []);
        var hex = cl.Get("auth-key") ?? Environment.GetEnvironmentVariable("KVASIR_AUTH_KEY")
            ?? throw new UsageException("admin-token needs --auth-key HEX (or KVASIR_AUTH_KEY)");
        byte[] key;
        try { key = Kvasir.Protocol.AuthHandshake.ParseKey(hex); }
        catch (FormatException ex) { throw new UsageException($"--auth-key: {ex.Message}"); }
        Console.WriteLine(Kvasir.Server.Admin.AdminServer.Token(key));
        return 0;
    }
}
