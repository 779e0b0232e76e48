using BenchmarkDotNet.Attributes;
using Kvasir.Storage.Internal;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Allocator cost per allocate+free pair at steady state over a 1 GiB space. The allocators keep their bookkeeping
/// in managed arrays and never touch arena memory, so no arena is allocated here (TLSF: 16 B per 4 KiB granule =
/// 4 MiB of tags; block allocator: 4096 blocks of 256 KiB).
/// </summary>
/// <remarks>
/// FIFO benchmarks keep a ring of live extents: each operation frees the oldest extent(s) and allocates a new one,
/// so the allocator sees a realistic mix of split, merge and list traffic. One operation = one allocation and, on
/// average, one free.
/// </remarks>
[MemoryDiagnoser]
public class AllocatorBenchmarks
{
    private const long Space = 1L << 30;
    private const int Granule = 4096;
    private const int Uniform = 256 << 10;
    private const double Occupancy = 0.75;

    private TlsfAllocator _tlsfUniform = null!;
    private long[] _uniformRing = null!;
    private int _uniformHead;

    private TlsfAllocator _tlsfPair = null!;

    private TlsfAllocator _tlsfMixed = null!;
    private int[] _mixedStream = null!;
    private int _mixedNext;
    private long[] _mixedOffsets = null!;
    private long[] _mixedSizes = null!;
    private int _mixedHead;
    private int _mixedTail;
    private long _mixedLive;
    private long _mixedBudget;

    private BlockAllocator _block = null!;
    private long[] _blockRing = null!;
    private int _blockHead;

    [GlobalSetup]
    public void Setup()
    {
        int live = (int)(Space / Uniform * Occupancy);

        // TLSF, uniform 256 KiB: 75% full, FIFO replacement.
        _tlsfUniform = new TlsfAllocator(Space, Granule);
        _uniformRing = new long[live];
        for (int i = 0; i < live; i++)
        {
            Check(_tlsfUniform.TryAllocate(Uniform, out _uniformRing[i]));
        }

        // TLSF, allocate then free at once: the split of the free tail and the merge back.
        _tlsfPair = new TlsfAllocator(Space, Granule);
        for (int i = 0; i < live; i++)
        {
            Check(_tlsfPair.TryAllocate(Uniform, out _));
        }

        // TLSF, mixed stream 4 KiB 70% / 256 KiB 20% / 3 MiB 10%, pre-generated, run to steady state first.
        var random = new Random(42);
        _mixedStream = new int[1 << 16];
        for (int i = 0; i < _mixedStream.Length; i++)
        {
            int roll = random.Next(100);
            _mixedStream[i] = roll < 70 ? 4 << 10 : roll < 90 ? 256 << 10 : 3 << 20;
        }

        _tlsfMixed = new TlsfAllocator(Space, Granule);
        int ringSize = (int)(Space / Granule);
        _mixedOffsets = new long[ringSize];
        _mixedSizes = new long[ringSize];
        _mixedBudget = (long)(Space * Occupancy);
        long written = 0;
        while (written < 3 * Space)
        {
            written += MixedStep();
        }

        // Block allocator, 256 KiB blocks: 75% full, FIFO replacement.
        _block = new BlockAllocator(Space, Uniform);
        _blockRing = new long[live];
        for (int i = 0; i < live; i++)
        {
            Check(_block.TryAllocate(Uniform, out _blockRing[i]));
        }
    }

    [Benchmark(Description = "TLSF 256K FIFO free+alloc")]
    public long TlsfUniformFifo()
    {
        int head = _uniformHead;
        _tlsfUniform.Free(_uniformRing[head]);
        _tlsfUniform.TryAllocate(Uniform, out long offset);
        _uniformRing[head] = offset;
        _uniformHead = head + 1 == _uniformRing.Length ? 0 : head + 1;
        return offset;
    }

    [Benchmark(Description = "TLSF 256K alloc+free (split/merge)")]
    public long TlsfUniformPair()
    {
        _tlsfPair.TryAllocate(Uniform, out long offset);
        _tlsfPair.Free(offset);
        return offset;
    }

    [Benchmark(Description = "TLSF mixed 4K/256K/3M FIFO")]
    public long TlsfMixedFifo() => MixedStep();

    [Benchmark(Description = "Block 256K FIFO free+alloc")]
    public long BlockFifo()
    {
        int head = _blockHead;
        _block.Free(_blockRing[head]);
        _block.TryAllocate(Uniform, out long offset);
        _blockRing[head] = offset;
        _blockHead = head + 1 == _blockRing.Length ? 0 : head + 1;
        return offset;
    }

    /// <summary>Allocates the next size of the stream, freeing the oldest extents while over budget or fragmented.</summary>
    private long MixedStep()
    {
        long size = _mixedStream[_mixedNext];
        _mixedNext = (_mixedNext + 1) & (_mixedStream.Length - 1);
        while (_mixedLive + size > _mixedBudget)
        {
            FreeOldest();
        }

        long offset;
        while (!_tlsfMixed.TryAllocate(size, out offset))
        {
            FreeOldest();
        }

        _mixedOffsets[_mixedTail] = offset;
        _mixedSizes[_mixedTail] = size;
        _mixedTail = (_mixedTail + 1) & (_mixedOffsets.Length - 1);
        _mixedLive += size;
        return size;
    }

    private void FreeOldest()
    {
        _tlsfMixed.Free(_mixedOffsets[_mixedHead]);
        _mixedLive -= _mixedSizes[_mixedHead];
        _mixedHead = (_mixedHead + 1) & (_mixedOffsets.Length - 1);
    }

    private static void Check(bool ok)
    {
        if (!ok)
        {
            throw new InvalidOperationException("setup allocation failed");
        }
    }
}
