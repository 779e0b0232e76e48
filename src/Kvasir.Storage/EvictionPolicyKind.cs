namespace Kvasir.Storage;

/// <summary>Which values the store gives up first when it needs room.</summary>
public enum EvictionPolicyKind
{
    /// <summary>Least recently used first. Chain links are recorded but do not influence the choice.</summary>
    Lru,

    /// <summary>
    /// Only chain leaves (values no present value continues) are evicted, least recently used leaf first,
    /// so what survives of a chain is always a prefix of it. See <see cref="KvArenaStore.Commit"/>.
    /// </summary>
    PrefixAware,
}
