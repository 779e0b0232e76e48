using Kvasir.Storage;

namespace Kvasir.Cli;

/// <summary>The command-line names of the eviction policies (<c>serve --eviction</c>, <c>bench --trace --policy</c>).</summary>
public static class EvictionNames
{
    public static readonly IReadOnlyList<(string Name, EvictionPolicyKind Kind)> All =
    [
        ("lru", EvictionPolicyKind.Lru),
        ("fifo", EvictionPolicyKind.Fifo),
        ("lfu", EvictionPolicyKind.Lfu),
        ("s3fifo", EvictionPolicyKind.S3Fifo),
        ("prefix", EvictionPolicyKind.PrefixAware),
        ("chainlfu", EvictionPolicyKind.ChainLfu),
        ("chainsketch", EvictionPolicyKind.ChainSketch),
    ];

    /// <summary>"lru|fifo|…" for help texts.</summary>
    public static string Choices => string.Join('|', All.Select(p => p.Name));

    public static string NameOf(EvictionPolicyKind kind) => All.First(p => p.Kind == kind).Name;

    public static EvictionPolicyKind Parse(string name, string option)
    {
        foreach (var (n, kind) in All)
            if (n == name) return kind;
        throw new UsageException($"--{option}: '{name}' is not one of {string.Join(", ", All.Select(p => p.Name))}");
    }
}
