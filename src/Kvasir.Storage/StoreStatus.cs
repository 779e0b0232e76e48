namespace Kvasir.Storage;

/// <summary>Outcome of a store operation. Values are stable: the server maps them onto wire status codes.</summary>
public enum StoreStatus : byte
{
    /// <summary>The operation succeeded.</summary>
    Ok = 0,

    /// <summary>The key is not present (never written, removed or evicted). A miss, not an error.</summary>
    NotFound = 1,

    /// <summary>The value is longer than <see cref="StoreOptions.MaxValueBytes"/> or, in block mode, than <see cref="StoreOptions.BlockSize"/>.</summary>
    ValueTooLarge = 2,

    /// <summary>The key is empty or longer than <see cref="StoreOptions.MaxKeyBytes"/>.</summary>
    InvalidKey = 3,

    /// <summary>No room could be made: everything that could be evicted has been, and the rest is pinned, leased or reserved.</summary>
    OutOfMemory = 4,
}

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
