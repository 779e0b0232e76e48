using Kvasir.Client;

namespace Kvasir.Prefix;

/// <summary>
/// The store below a prefix cache: block keys ("kvb1:" + hex), one batched call per operation, and the
/// mapping of the client's per-key statuses onto KV error codes. A missing block is a normal answer (the run
/// stops there), never an error; a node that is down or slow is <see cref="TransferFailedException"/> or
/// <see cref="TransferTimeoutException"/>; a block whose size disagrees with its buffer is
/// <see cref="MetadataMismatchException"/>.
/// </summary>
internal sealed class StoreTier(KvStore store)
{
    public KvStore Store { get; } = store;

    /// <summary>How many of <paramref name="hashes"/>, from the first, the store holds (one EXISTS; an errored key ends the run).</summary>
    public async Task<int> PresentRunAsync(IReadOnlyList<BlockHash> hashes, CancellationToken ct)
    {
        if (hashes.Count == 0) return 0;
        int[] present;
        try
        {
            present = await Store.ExistsAsync(Keys(hashes), ct).ConfigureAwait(false);
        }
        catch (KvasirException e)
        {
            throw new TransferFailedException($"EXISTS of {hashes.Count} blocks failed: {e.Message}", new Dictionary<string, object?> { ["blocks"] = hashes.Count }, e);
        }
        int run = 0;
        while (run < present.Length && present[run] == 1) run++;
        return run;
    }

    /// <summary>
    /// <see cref="PresentRunAsync"/> of each of <paramref name="chains"/>, in one EXISTS for all their keys (one round trip
    /// for a scheduler step's prompts): each chain's run is cut at its own first absent or errored key.
    /// </summary>
    public async Task<int[]> PresentRunsAsync(IReadOnlyList<IReadOnlyList<BlockHash>> chains, CancellationToken ct)
    {
        var runs = new int[chains.Count];
        var all = chains.SelectMany(c => c).ToArray();
        if (all.Length == 0) return runs;
        int[] present;
        try
        {
            present = await Store.ExistsAsync(Keys(all), ct).ConfigureAwait(false);
        }
        catch (KvasirException e)
        {
            throw new TransferFailedException($"EXISTS of {all.Length} blocks failed: {e.Message}", new Dictionary<string, object?> { ["blocks"] = all.Length }, e);
        }
        for (int c = 0, at = 0; c < chains.Count; at += chains[c].Count, c++)
            while (runs[c] < chains[c].Count && present[at + runs[c]] == 1) runs[c]++;
        return runs;
    }

    /// <summary>Loads blocks into their buffers; returns how many, from the first, arrived whole (stops at the first miss).</summary>
    public async Task<int> LoadAsync(IReadOnlyList<BlockHash> hashes, IReadOnlyList<Memory<byte>> destinations, CancellationToken ct)
    {
        if (hashes.Count != destinations.Count)
            throw new ArgumentException($"{hashes.Count} hashes but {destinations.Count} destinations", nameof(destinations));
        if (hashes.Count == 0) return 0;
        KvGetResult[] results;
        try
        {
            results = await Store.GetAsync(Keys(hashes), destinations, ct).ConfigureAwait(false);
        }
        catch (KvasirException e)
        {
            throw new TransferFailedException($"GET of {hashes.Count} blocks failed: {e.Message}", new Dictionary<string, object?> { ["blocks"] = hashes.Count }, e);
        }
        for (int i = 0; i < results.Length; i++)
        {
            var result = results[i];
            var context = new Dictionary<string, object?> { ["block"] = hashes[i].Hex, ["index"] = i, ["status"] = result.Status.ToString(), ["buffer_bytes"] = destinations[i].Length };
            switch (result.Status)
            {
                case KvStatus.Ok when result.Length == destinations[i].Length:
                    continue;
                case KvStatus.Ok:
                    context["value_bytes"] = result.Length;
                    throw new MetadataMismatchException($"block {hashes[i]} on the node is {result.Length} bytes, its buffer {destinations[i].Length}", context);
                case KvStatus.BufferTooSmall:
                    throw new MetadataMismatchException($"block {hashes[i]} on the node is larger than its {destinations[i].Length}-byte buffer", context);
                case KvStatus.NotFound:
                // The client's CRC check failed (KvStoreOptions.VerifyValueCrc): counted and logged by the store; the
                // bytes are not the block, so the prefix that arrived whole ends here, as at a block the node lacks.
                case KvStatus.ChecksumMismatch:
                    return i;
                case KvStatus.Timeout:
                    throw new TransferTimeoutException($"loading block {hashes[i]} timed out", context);
                default:
                    throw new TransferFailedException($"loading block {hashes[i]} failed: {result.Status}", context);
            }
        }
        return results.Length;
    }

    /// <summary>Saves blocks as one chained PUT (the node evicts a chain's tail first); any key not stored throws.</summary>
    public async Task SaveAsync(IReadOnlyList<BlockHash> hashes, IReadOnlyList<ReadOnlyMemory<byte>> values, BlockHash? parent, CancellationToken ct)
    {
        if (hashes.Count != values.Count)
            throw new ArgumentException($"{hashes.Count} hashes but {values.Count} values", nameof(values));
        if (hashes.Count == 0) return;
        var options = new PutOptions { Chain = true, ChainParent = parent is { } p ? p.StoreKey() : ReadOnlyMemory<byte>.Empty };
        KvStatus[] statuses;
        try
        {
            statuses = await Store.PutAsync(Keys(hashes), values, options, ct).ConfigureAwait(false);
        }
        catch (KvasirException e)
        {
            throw new TransferFailedException($"PUT of {hashes.Count} blocks failed: {e.Message}", new Dictionary<string, object?> { ["blocks"] = hashes.Count }, e);
        }
        for (int i = 0; i < statuses.Length; i++)
        {
            if (statuses[i] == KvStatus.Ok) continue;
            var context = new Dictionary<string, object?> { ["block"] = hashes[i].Hex, ["index"] = i, ["status"] = statuses[i].ToString(), ["bytes"] = values[i].Length };
            if (statuses[i] == KvStatus.Timeout) throw new TransferTimeoutException($"saving block {hashes[i]} timed out", context);
            throw new TransferFailedException($"saving block {hashes[i]} failed: {statuses[i]}", context);
        }
    }

    private static ReadOnlyMemory<byte>[] Keys(IReadOnlyList<BlockHash> hashes)
    {
        var keys = new ReadOnlyMemory<byte>[hashes.Count];
        for (int i = 0; i < keys.Length; i++) keys[i] = hashes[i].StoreKey();
        return keys;
    }
}
