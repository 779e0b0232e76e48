namespace Kvasir.Cluster;

/// <summary>
/// The registry's Lua scripts, read from the files in python/kvasir/registry_lua/ that this assembly embeds: the one
/// copy both the .NET registry and the Python client run, sent to Redis as the files' text unchanged.
/// </summary>
public static class RegistryScripts
{
    /// <summary>KEYS: members records down epoch; ARGV: id json ttl_ms channel → 1 when the live membership changed.</summary>
    public static string Heartbeat { get; } = Load("heartbeat");

    /// <summary>KEYS: members records down epoch; ARGV: id channel.</summary>
    public static string Unregister { get; } = Load("unregister");

    /// <summary>KEYS: members records epoch → {epoch, id1, json1, …}.</summary>
    public static string Read { get; } = Load("read");

    /// <summary>KEYS: members epoch → {epoch, live}.</summary>
    public static string Poll { get; } = Load("poll");

    /// <summary>KEYS: members records down → {now, id, json, score, live(1/0), …}.</summary>
    public static string List { get; } = Load("list");

    /// <summary>The names of the embedded scripts (file names without .lua), sorted.</summary>
    public static IReadOnlyList<string> Names { get; } = typeof(RegistryScripts).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".lua", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..^4]).Order(StringComparer.Ordinal).ToList();

    private const string Prefix = "Kvasir.Cluster.registry_lua.";

    /// <summary>The text of the embedded script <paramref name="name"/>.lua (UTF-8, as in the file).</summary>
    public static string Load(string name)
    {
        using var stream = typeof(RegistryScripts).Assembly.GetManifestResourceStream(Prefix + name + ".lua")
            ?? throw new InvalidOperationException($"registry script {name}.lua is not embedded in {typeof(RegistryScripts).Assembly.GetName().Name} (see Kvasir.Cluster.csproj)");
        using var reader = new StreamReader(stream, new System.Text.UTF8Encoding(false), detectEncodingFromByteOrderMarks: false);
        return reader.ReadToEnd();
    }
}
