using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Kvasir.Cli;

/// <summary>Where an effective setting came from.</summary>
public sealed record Setting(ServeOption Option, string? Value, string Source);

/// <summary>
/// The configuration chain of <c>kvasir serve</c>: defaults, then the YAML file (<c>--config FILE</c>,
/// else <c>KVASIR_CONFIG</c>; its <c>node:</c> section — top-level keys belong to the clients), then
/// <c>KVASIR_*</c> environment variables, then flags; later wins. Unknown keys, non-scalar values
/// and unreadable files are one-line usage errors.
/// </summary>
public static class ConfigChain
{
    public static (List<string> Args, List<Setting> Effective) Resolve(IReadOnlyList<string> args, Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        var flags = CommandLine.Parse(args, [.. ServeOptionTable.Names, "config"], [], ServeOptionTable.Repeatable);
        if (flags.Positionals.Count > 0) throw new UsageException($"unexpected argument '{flags.Positionals[0]}'");
        var chosen = new Dictionary<string, (string Value, string Source)>();
        var path = flags.Get("config") ?? env("KVASIR_CONFIG");
        if (!string.IsNullOrEmpty(path))
            foreach (var (name, value) in ReadFile(path)) chosen[name] = (value, $"file {path}");
        foreach (var o in ServeOptionTable.All)
            if (env(o.EnvVar) is { Length: > 0 } v) chosen[o.Name] = (v, $"env {o.EnvVar}");
        foreach (var o in ServeOptionTable.All)
            if (flags.Get(o.Name) is { } v) chosen[o.Name] = (v, "flag");
        var effective = ServeOptionTable.All
            .Select(o => chosen.TryGetValue(o.Name, out var c) ? new Setting(o, c.Value, c.Source) : new Setting(o, null, "default"))
            .ToList();
        var resolved = new List<string>();
        foreach (var s in effective.Where(s => s.Value is not null)) { resolved.Add(s.Option.Flag); resolved.Add(s.Value!); }
        return (resolved, effective);
    }

    /// <summary>
    /// Parses the resolved configuration with <paramref name="parse"/>; an error about a value that came
    /// from the file or the environment says so (<c>--memory: 'lots' is not a size (from env KVASIR_MEMORY)</c>),
    /// so the operator knows where to fix it.
    /// </summary>
    public static T Parse<T>(List<string> args, List<Setting> effective, Func<List<string>, T> parse)
    {
        try { return parse(args); }
        catch (UsageException ex)
        {
            var culprit = effective
                .Where(s => s.Source is not ("flag" or "default") && ex.Message.Contains(s.Option.Flag, StringComparison.Ordinal))
                .OrderBy(s => ex.Message.IndexOf(s.Option.Flag, StringComparison.Ordinal))
                .FirstOrDefault();
            if (culprit is null) throw;
            throw new UsageException($"{ex.Message} (from {culprit.Source})");
        }
    }

    /// <summary>The top-level keys of a config file that the clients read (python/kvasir/config.py): the node skips them.</summary>
    private static readonly HashSet<string> ClientKeys =
    [
        "servers", "auth_key", "auth_key_file", "transport", "connect_timeout", "request_timeout", "redis_url", "cluster", "replicas",
        "tls_ca", "tls_server_name", "tls_cert", "tls_key",
    ];

    private static IEnumerable<(string Name, string Value)> ReadFile(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException($"config {path}: {ex.Message}"); }
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlException ex) { throw new UsageException($"config {path}: not valid YAML at line {ex.Start.Line}: {ex.Message}"); }
        if (stream.Documents.Count == 0) yield break;
        if (stream.Documents[0].RootNode is not YamlMappingNode root) throw new UsageException($"config {path}: the file must hold a mapping");
        foreach (var (k, _) in root.Children)
        {
            var key = (k as YamlScalarNode)?.Value ?? "";
            if (key == "node" || ClientKeys.Contains(key)) continue;
            if (ServeOptionTable.Names.Contains(key.Replace('_', '-')))
                throw new UsageException($"config {path}: '{key}' is a node option at the top level, where only the clients' settings go: put it under node:");
            Console.Error.WriteLine($"kvasir serve: config {path}: top-level key '{key}' is neither a client setting nor node:, and is ignored (node options go under node:)");
        }
        if (!root.Children.TryGetValue(new YamlScalarNode("node"), out var nodeSection)) yield break;
        if (nodeSection is YamlScalarNode { Value: null or "" or "~" }) yield break;
        if (nodeSection is not YamlMappingNode node) throw new UsageException($"config {path}: 'node' must be a mapping of option: value");
        foreach (var (k, v) in node.Children)
        {
            var key = (k as YamlScalarNode)?.Value ?? "";
            var name = key.Replace('_', '-');
            if (!ServeOptionTable.Names.Contains(name))
                throw new UsageException($"config {path}: unknown option '{key}' under node: (see kvasir serve --help)");
            if (ServeOptionTable.Repeatable.Contains(name) && v is YamlSequenceNode list && list.Children.All(c => c is YamlScalarNode { Value: not null }))
            {
                yield return (name, string.Join(',', list.Children.Select(c => ((YamlScalarNode)c).Value)));
                continue;
            }
            if (v is not YamlScalarNode scalar || scalar.Value is null)
                throw new UsageException($"config {path}: node.{key} must be a single value");
            yield return (name, scalar.Value);
        }
    }
}
