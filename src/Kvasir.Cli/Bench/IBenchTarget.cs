namespace Kvasir.Cli.Bench;

/// <summary>
/// One load-generator lane's view of a system under test. Each in-flight lane opens its own
/// target: for the raw-protocol peers (Redis, memcached) that is one TCP connection each; for
/// Kvasir it is a view over one shared <c>KvStore</c> with its own connection pool. A target is
/// used by one lane at a time and need not be thread-safe.
/// </summary>
public interface IBenchTarget : IAsyncDisposable
{
    /// <summary>How values move, as every result line names it: tcp, shm, inproc, redis, memcached or memcpy.</summary>
    string Transport { get; }

    /// <summary>Stores each key's value. Returns how many keys failed.</summary>
    Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values);

    /// <summary>
    /// Stores the values as a chain: each key's block continues the previous key's, the first continues
    /// <paramref name="parent"/> (empty: none). Targets without chains store them as a plain batch.
    /// </summary>
    Task<int> PutChainAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values, ReadOnlyMemory<byte> parent)
        => PutAsync(keys, values);

    /// <summary>
    /// Reads each key's value straight into its destination. <paramref name="lengths"/>[i] becomes the
    /// value's length, <see cref="Miss"/> for a miss, or <see cref="Error"/> for any failure (including a
    /// value longer than its destination).
    /// </summary>
    Task GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths);

    /// <summary><paramref name="present"/>[i] becomes 1 (present), 0 (missing) or −1 (error).</summary>
    Task ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present);

    public const long Miss = -1;
    public const long Error = -2;
}
