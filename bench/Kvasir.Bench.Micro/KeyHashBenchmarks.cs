using BenchmarkDotNet.Attributes;
using Kvasir.Storage.Internal;

namespace Kvasir.Bench.Micro;

/// <summary>
/// The index's key comparer: the span hash (HashCode.AddBytes, per-process seed) and a hit through the
/// dictionary's alternate lookup on a 100k-key index, probing with spans over a separate buffer (so equality
/// compares bytes, not references). Both should allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class KeyHashBenchmarks
{
    private const int IndexKeys = 100_000;
    private const int Probes = 4096;

    private byte[] _hashKey = null!;
    private Dictionary<byte[], int> _index = null!;
    private Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> _lookup;
    private byte[] _probes = null!;
    private int _next;

    [Params(16, 64, 512)]
    public int KeyLength { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(5);
        _hashKey = new byte[KeyLength];
        random.NextBytes(_hashKey);

        _index = new Dictionary<byte[], int>(IndexKeys, ByteKeyComparer.Instance);
        var keys = new byte[IndexKeys][];
        for (int i = 0; i < IndexKeys; i++)
        {
            byte[] key = new byte[KeyLength];
            random.NextBytes(key);
            if (_index.TryAdd(key, i))
            {
                keys[i] = key;
            }
            else
            {
                i--;
            }
        }

        _lookup = _index.GetAlternateLookup<ReadOnlySpan<byte>>();
        _probes = new byte[Probes * KeyLength];
        for (int p = 0; p < Probes; p++)
        {
            keys[random.Next(IndexKeys)].CopyTo(_probes, p * KeyLength);
        }
    }

    [Benchmark(Description = "ByteKeyComparer.GetHashCode(span)")]
    public int Hash() => ByteKeyComparer.Instance.GetHashCode((ReadOnlySpan<byte>)_hashKey);

    [Benchmark(Description = "Dictionary alternate lookup hit (100k keys)")]
    public int LookupHit()
    {
        int p = _next;
        _next = (p + 1) & (Probes - 1);
        if (!_lookup.TryGetValue(_probes.AsSpan(p * KeyLength, KeyLength), out int value))
        {
            throw new InvalidOperationException("expected a hit");
        }

        return value;
    }
}
