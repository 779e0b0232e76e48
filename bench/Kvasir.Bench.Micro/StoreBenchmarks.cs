using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Bench.Micro;

/// <summary>
/// The public store path without payload copies: overwrite of a fixed key set (TryReserve + Commit, 64 KiB values,
/// CRC 0) and a leased read hit (TryLease + Release). 64 keys × 64 KiB fill a quarter of the 64 MiB arena, so no
/// eviction runs; the arena's pages are never written.
/// </summary>
/// <remarks>
/// Expected allocations: an overwrite (what this measures) allocates a <c>ValueVersion</c> and the <see cref="Reservation"/>,
/// which names its key by the key's slot (a new key's put also copies the key); a lease allocates the
/// <see cref="ValueLease"/> object and nothing else.
/// </remarks>
[MemoryDiagnoser]
public class StoreBenchmarks
{
    private const int Keys = 64;
    private const int ValueBytes = 64 << 10;

    private KvArenaStore _store = null!;
    private byte[][] _keys = null!;
    private int _next;

    [Params(32)]
    public int KeyLength { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _store = new KvArenaStore(new StoreOptions { Capacity = 64L << 20 });
        var random = new Random(7);
        _keys = new byte[Keys][];
        for (int i = 0; i < Keys; i++)
        {
            _keys[i] = new byte[KeyLength];
            random.NextBytes(_keys[i]);
            Put(_keys[i]);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _store.Dispose();

    [Benchmark(Description = "Store TryReserve+Commit (overwrite 64K)")]
    public WireStatus ReserveCommit() => Put(NextKey());

    [Benchmark(Description = "Store TryLease+Release (hit)")]
    public long LeaseRelease()
    {
        if (_store.TryLease(NextKey(), null, out ValueLease? lease) != WireStatus.Ok)
        {
            throw new InvalidOperationException("expected a hit");
        }

        long id = lease!.Id;
        _store.Release(lease);
        return id;
    }

    private byte[] NextKey()
    {
        byte[] key = _keys[_next];
        _next = (_next + 1) & (Keys - 1);
        return key;
    }

    private WireStatus Put(byte[] key)
    {
        WireStatus status = _store.TryReserve(key, ValueBytes, out Reservation? reservation);
        if (status != WireStatus.Ok)
        {
            throw new InvalidOperationException($"TryReserve returned {status}");
        }

        return _store.Commit(reservation!, 0);
    }
}
