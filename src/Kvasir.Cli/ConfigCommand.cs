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

    /// <summary><c>kvasir keygen FILE</c>: a new random auth key in a new file of mode 0600 (an existing key file is
    /// kept); prints where it is and how to use it.</summary>
    public static int Keygen(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, [], []);
        if (cl.Positionals.Count != 1) throw new UsageException("keygen needs one argument: the file to write (e.g. kvasir keygen /etc/kvasir/auth.key)");
        string path = Path.GetFullPath(cl.Positionals[0]);
        Console.WriteLine(AuthKeySource.Generate(path)
            ? $"kvasir keygen: wrote a new auth key to {path} (mode 0600)"
            : $"kvasir keygen: {path} already holds an auth key; kept it (keygen never overwrites a key)");
        Console.WriteLine($"  node:    kvasir serve --auth-key-file {path}");
        Console.WriteLine($"  clients: KVASIR_AUTH_KEY_FILE={path} (CLI and Python), or --auth-key-file {path}");
        return 0;
    }

    /// <summary><c>kvasir admin-token --auth-key HEX</c>: the bearer token of the admin endpoints (docs/operations.md).</summary>
    public static int AdminToken(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ["auth-key", "auth-key-file"], []);
        var hex = AuthKeySource.Resolve(cl)
            ?? throw new UsageException("admin-token needs the node's key: --auth-key-file PATH, KVASIR_AUTH_KEY or KVASIR_AUTH_KEY_FILE");
        byte[] key;
        try { key = Kvasir.Protocol.AuthHandshake.ParseKey(hex); }
        catch (FormatException ex) { throw new UsageException($"--auth-key: {ex.Message}"); }
        Console.WriteLine(Kvasir.Server.Admin.AdminServer.Token(key));
        return 0;
    }
}
