namespace Kvasir.Storage.Internal;

/// <summary>Builds the policy object behind each <see cref="EvictionPolicyKind"/>.</summary>
internal static class EvictionPolicies
{
    public static IEvictionPolicy Create(EvictionPolicyKind kind) => kind switch
    {
        EvictionPolicyKind.Lru => new LruPolicy(),
        EvictionPolicyKind.PrefixAware => new PrefixAwarePolicy(),
        EvictionPolicyKind.Fifo => new FifoPolicy(),
        EvictionPolicyKind.Lfu => new LfuPolicy(),
        EvictionPolicyKind.S3Fifo => new S3FifoPolicy(),
        EvictionPolicyKind.ChainLfu => new ChainLfuPolicy(remember: false),
        EvictionPolicyKind.ChainSketch => new ChainLfuPolicy(remember: true),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not an eviction policy"),
    };
}
