using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kvasir.Client;
using Kvasir.Protocol;

namespace Kvasir.Cli.Bench;

/// <summary>
/// A lane's view of a shared <see cref="KvStore"/> (TCP pool or in-process node). With <paramref name="givenCrcs"/>
/// each value's CRC-32C is computed once, the first time the value is stored, and passed as the writer's own
/// (<see cref="PutOptions.ValueCrc32C"/>): an engine that already holds its blocks' checksums. With <paramref name="chain"/>
/// every PUT declares its keys a chain (<see cref="PutOptions.Chain"/>), as the engine connectors save a request's blocks.
/// </summary>
public sealed class KvasirTarget(KvStore store, bool givenCrcs = false, bool chain = false) : IBenchTarget
{
    /// <summary>The store's transport; a cluster store's connections choose per node ("auto").</summary>
    public string Transport => store.Transport switch
    {
        KvTransportKind.Tcp => "tcp",
        KvTransportKind.Shm => "shm",
        KvTransportKind.InProcess => "inproc",
        _ => "auto",
    };

    /// <summary>Each bench value's CRC, by its array (the bench makes every value once and reuses it).</summary>
    private static readonly ConditionalWeakTable<byte[], StrongBox<uint>> s_crcs = [];

    public async Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        int failed = 0;
        foreach (var s in await store.PutAsync(keys, values, Options(values))) if (s != KvStatus.Ok) failed++;
        return failed;
    }

    public async Task<int> PutChainAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values, ReadOnlyMemory<byte> parent)
    {
        int failed = 0;
        var options = new PutOptions { Chain = true, ChainParent = parent, ValueCrc32C = Options(values)?.ValueCrc32C };
        foreach (var s in await store.PutAsync(keys, values, options)) if (s != KvStatus.Ok) failed++;
        return failed;
    }

    private PutOptions? Options(IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        if (!givenCrcs) return chain ? new PutOptions { Chain = true } : null;
        var crcs = new uint[values.Count];
        for (int i = 0; i < crcs.Length; i++) crcs[i] = CrcOf(values[i]);
        return new PutOptions { ValueCrc32C = crcs, Chain = chain };
    }

    private static uint CrcOf(ReadOnlyMemory<byte> value)
    {
        if (!MemoryMarshal.TryGetArray(value, out var segment) || segment.Offset != 0 || segment.Count != segment.Array!.Length)
            return Crc32C.Compute(value.Span);
        return s_crcs.GetValue(segment.Array, a => new StrongBox<uint>(Crc32C.Compute(a))).Value;
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
