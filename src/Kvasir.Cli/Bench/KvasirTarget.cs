using Kvasir.Client;

namespace Kvasir.Cli.Bench;

/// <summary>A lane's view of a shared <see cref="KvStore"/> (TCP pool or in-process node).</summary>
public sealed class KvasirTarget(KvStore store) : IBenchTarget
{
    /// <summary>The store's transport; a cluster store's connections choose per node ("auto").</summary>
    public string Transport => store.Transport switch
    {
        KvTransportKind.Tcp => "tcp",
        KvTransportKind.Shm => "shm",
        KvTransportKind.InProcess => "inproc",
        _ => "auto",
    };

    public async Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        int failed = 0;
        foreach (var s in await store.PutAsync(keys, values)) if (s != KvStatus.Ok) failed++;
        return failed;
    }

    public async Task<int> PutChainAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values, ReadOnlyMemory<byte> parent)
    {
        int failed = 0;
        foreach (var s in await store.PutAsync(keys, values, new PutOptions { Chain = true, ChainParent = parent })) if (s != KvStatus.Ok) failed++;
        return failed;
    }

    public async Task GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths)
    {
        var results = await store.GetAsync(keys, destinations);
        for (int i = 0; i < results.Length; i++)
            lengths[i] = results[i].Status switch { KvStatus.Ok => results[i].Length, KvStatus.NotFound => IBenchTarget.Miss, _ => IBenchTarget.Error };
    }

    public async Task ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present)
        => (await store.ExistsAsync(keys)).CopyTo(present, 0);

    /// <summary>The store is shared by every lane and disposed by its owner.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
