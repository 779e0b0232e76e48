using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>A PUT value: one contiguous memory or several pieces concatenated in order.</summary>
internal readonly struct ValueSource
{
    public ValueSource(ReadOnlyMemory<byte> one) { One = one; Length = one.Length; }

    public ValueSource(IReadOnlyList<ReadOnlyMemory<byte>> many)
    {
        Many = many;
        long length = 0;
        foreach (var piece in many) length += piece.Length;
        Length = length;
    }

    public ReadOnlyMemory<byte> One { get; }
    public IReadOnlyList<ReadOnlyMemory<byte>>? Many { get; }
    public long Length { get; }

    public int PieceCount => Many?.Count ?? 1;
    public ReadOnlyMemory<byte> Piece(int i) => Many is null ? One : Many[i];
}

/// <summary>A GET destination: one memory, several pieces filled in order, or "allocate on arrival".</summary>
internal readonly struct ValueDestination
{
    public ValueDestination(Memory<byte> one) { One = one; Capacity = one.Length; }

    public ValueDestination(IReadOnlyList<Memory<byte>> many)
    {
        Many = many;
        long capacity = 0;
        foreach (var piece in many) capacity += piece.Length;
        Capacity = capacity;
    }

    private ValueDestination(bool allocate) { Allocate = allocate; Capacity = long.MaxValue; }

    public static ValueDestination Allocating => new(true);

    public Memory<byte> One { get; }
    public IReadOnlyList<Memory<byte>>? Many { get; }
    public long Capacity { get; }
    public bool Allocate { get; }

    public int PieceCount => Many?.Count ?? 1;
    public Memory<byte> Piece(int i) => Many is null ? One : Many[i];
}

internal sealed class PutBatch(IReadOnlyList<ReadOnlyMemory<byte>> keys, ValueSource[] values, IReadOnlyList<uint>? givenCrcs = null)
{
    /// <summary>Above this many bytes in one request the values' CRCs are computed on several cores (where there are 4 or more).</summary>
    private const long ParallelCrcBytes = 4L << 20;

    /// <summary>
    /// With 2 cores the other one is busy with the socket copies (and, on one host, the node): a parallel CRC there only
    /// adds thread-pool wake-ups (6.5 → 30 context switches per 16 MiB SET, no CPU saved; docs/benchmarks.md).
    /// </summary>
    private static readonly bool s_parallelCrc = Environment.ProcessorCount >= 4;

    public IReadOnlyList<ReadOnlyMemory<byte>> Keys { get; } = keys;
    public ValueSource[] Values { get; } = values;
    public KvStatus[] Results { get; } = new KvStatus[keys.Count];

    /// <summary>Each value's version (PUT flag VERSION, docs/cluster.md § Versions), or null: the node's clock assigns them.</summary>
    public long[]? Versions { get; init; }
    /// <summary>The caller gave each value's CRC-32C (<see cref="PutOptions.ValueCrc32C"/>).</summary>
    public bool HasGivenCrcs => givenCrcs is not null;

    /// <summary>Each value's CRC-32C, once <see cref="ComputeCrcs"/> ran for its range; null before.</summary>
    public uint[]? Crcs { get; private set; }

    /// <summary>Fills <see cref="Crcs"/> for <c>[start, end)</c>: the caller's CRCs when it gave them, else computed (large batches in parallel).</summary>
    public void ComputeCrcs(int start, int end)
    {
        lock (this) Crcs ??= new uint[Keys.Count];
        var crcs = Crcs;
        if (givenCrcs is not null)
        {
            for (int i = start; i < end; i++) crcs[i] = givenCrcs[i];
            return;
        }
        long bytes = 0;
        for (int i = start; i < end; i++) bytes += Values[i].Length;
        if (s_parallelCrc && bytes >= ParallelCrcBytes && end - start > 1) Parallel.For(start, end, i => crcs[i] = Crc(Values[i]));
        else for (int i = start; i < end; i++) crcs[i] = Crc(Values[i]);
    }

    private static uint Crc(in ValueSource value)
    {
        uint state = Crc32C.InitialState;
        for (int p = 0; p < value.PieceCount; p++) state = Crc32C.Append(state, value.Piece(p).Span);
        return Crc32C.Complete(state);
    }
    /// <summary>Every value's time to live in seconds (0: never expires); null for the node's default.</summary>
    public uint? TtlSeconds { get; set; }
}

internal sealed class GetBatch(IReadOnlyList<ReadOnlyMemory<byte>> keys, ValueDestination[] destinations)
{
    public IReadOnlyList<ReadOnlyMemory<byte>> Keys { get; } = keys;
    public ValueDestination[] Destinations { get; } = destinations;
    public KvGetResult[] Results { get; } = new KvGetResult[keys.Count];

    /// <summary>Values received for <see cref="ValueDestination.Allocating"/> destinations.</summary>
    public byte[]?[] Allocated { get; } = new byte[]?[keys.Count];

    /// <summary>Each hit's version as its node reported it; 0 when unknown (a node without the versions feature, shared memory, in-process).</summary>
    public long[] Versions { get; } = new long[keys.Count];

    /// <summary>The caller compares versions: transports that cannot report them (shared memory) read over TCP instead.</summary>
    public bool WantVersions { get; init; }
}

/// <summary>What the node accepts, from its HELLO reply (or its options when embedded).</summary>
internal sealed record NodeLimits(long MaxValueBytes, int MaxKeyBytes, int MaxBatchKeys, int MaxMetaBytes, long Capacity, string NodeId);
