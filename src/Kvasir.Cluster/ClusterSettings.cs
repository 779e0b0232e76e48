using System.Globalization;

namespace Kvasir.Cluster;

/// <summary>
/// Cluster-wide settings kept in the registry (docs/cluster.md § Cluster settings), which clients use unless told
/// otherwise: set with <c>kvasir cluster set NAME=VALUE</c>, read by every client when it connects.
/// </summary>
public sealed record ClusterSettings
{
    /// <summary>The names a cluster record may hold, with what each means (for the CLI's help and errors).</summary>
    public static readonly IReadOnlyDictionary<string, string> Known = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["replicas"] = "copies of each value, 1 to 16: clients that do not say --replicas / Replicas / replicas use it",
    };

    /// <summary>No settings: what a cluster without a record (or a registry without settings) has.</summary>
    public static readonly ClusterSettings None = new();

    /// <summary>Copies of each value; null when the cluster does not say (clients then use 1).</summary>
    public int? Replicas { get; init; }

    /// <summary>Every name and value as stored (names this build does not know included).</summary>
    public IReadOnlyDictionary<string, string> Values { get; init; } = new Dictionary<string, string>();

    /// <summary>Settings from stored names and values; a value this build cannot use is an error naming it.</summary>
    /// <exception cref="FormatException">A known setting with a bad value.</exception>
    public static ClusterSettings From(IReadOnlyDictionary<string, string> values) => new()
    {
        Values = values,
        Replicas = values.TryGetValue("replicas", out var r) ? ParseReplicas(r) : null,
    };

    /// <summary>Checks one NAME=VALUE before it is stored: a known name and a usable value.</summary>
    /// <exception cref="FormatException">Unknown name or bad value, in one line with the fix.</exception>
    public static void Validate(string name, string value)
    {
        if (!Known.ContainsKey(name))
            throw new FormatException($"unknown cluster setting '{name}'; known: {string.Join(", ", Known.Keys)}");
        if (name == "replicas") ParseReplicas(value);
    }

    private static int ParseReplicas(string text)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int r) && r is >= 1 and <= 16
            ? r
            : throw new FormatException($"cluster setting replicas='{text}' must be a whole number from 1 to 16");
}
