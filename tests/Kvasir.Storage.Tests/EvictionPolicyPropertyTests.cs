using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

/// <summary>
/// Every policy, under random puts (plain and chained), reads, held leases, pins, unpins and removes on a small full
/// store: pinned keys are never evicted, a held lease's bytes are never reused, the arena never holds more than its
/// capacity, nothing removed comes back, and a put fails for room only when pins and leases hold nearly everything.
/// </summary>
public sealed class EvictionPolicyPropertyTests
{
    private const int Block = 1024;
    private const int Blocks = 24;
    private const int KeySpace = 80;

    public static TheoryData<EvictionPolicyKind, int> PoliciesAndSeeds()
    {
        var data = new TheoryData<EvictionPolicyKind, int>();
        foreach (var kind in Enum.GetValues<EvictionPolicyKind>())
            foreach (int seed in new[] { 1, 2, 3 })
                data.Add(kind, seed);
        return data;
    }

    [Theory]
    [MemberData(nameof(PoliciesAndSeeds))]
    public void Pins_and_leases_survive_and_capacity_holds_under_random_operations(EvictionPolicyKind policy, int seed)
    {
        foreach (var (high, low) in new[] { (1.0, 1.0), (0.9, 0.75) })
        {
            using var store = new KvArenaStore(new StoreOptions
            {
                Capacity = Blocks * Block,
                BlockSize = Block,
                MaxValueBytes = Block,
                Eviction = policy,
                HighWatermark = high,
                LowWatermark = low,
            });
            Run(store, new Random(seed), policy);
        }
    }

    private static void Run(KvArenaStore store, Random random, EvictionPolicyKind policy)
    {
        var pins = new Dictionary<string, int>();
        var written = new Dictionary<string, ulong>(); // key → nonce of its current value (absent: removed or never put)
        var held = new List<(string Key, ulong Nonce, ValueLease Lease)>();
        ulong nonce = 0;
        for (int step = 0; step < 3000; step++)
        {
            string key = $"k{random.Next(KeySpace)}";
            int op = random.Next(100);
            if (op < 45)
            {
                string? parent = random.Next(3) == 0 ? null : $"k{random.Next(KeySpace)}";
                WireStatus status = Put(store, key, random.Next(1, Block + 1), parent, ++nonce);
                if (status == WireStatus.Ok)
                {
                    written[key] = nonce;
                }
                else
                {
                    Assert.Equal(WireStatus.OutOfMemory, status);
                    // Prefix-aware keeps every ancestor of a pinned or leased block too, so only the others are held to this.
                    int holding = pins.Count(p => p.Value > 0) + held.Count;
                    Assert.True(policy == EvictionPolicyKind.PrefixAware || holding >= Blocks - 2, $"{policy}: a put failed for room with only {holding} values pinned or leased, step {step}");
                }
            }
            else if (op < 60)
            {
                if (store.TryLease(Key(key), null, out ValueLease? lease) == WireStatus.Ok)
                {
                    if (held.Count < 6) held.Add((key, written[key], lease!));
                    else store.Release(lease!);
                }
            }
            else if (op < 70 && held.Count > 0)
            {
                int i = random.Next(held.Count);
                Assert.True(store.Release(held[i].Lease));
                held.RemoveAt(i);
            }
            else if (op < 80)
            {
                if (pins.Values.Count(v => v > 0) < Blocks / 3 && store.Pin(Key(key)) == WireStatus.Ok)
                    pins[key] = pins.GetValueOrDefault(key) + 1;
            }
            else if (op < 90)
            {
                if (store.Unpin(Key(key)) == WireStatus.Ok && pins.GetValueOrDefault(key) > 0)
                    pins[key]--;
            }
            else if (store.Remove(Key(key)) == WireStatus.Ok)
            {
                pins.Remove(key);
                written.Remove(key);
            }

            foreach (var (pinned, count) in pins)
            {
                Assert.True(count == 0 || store.Exists(Key(pinned)), $"{policy}: pinned {pinned} was evicted at step {step}");
            }

            foreach (var (leasedKey, leasedNonce, lease) in held)
            {
                Assert.True(Matches(lease.Span, Key(leasedKey), leasedNonce), $"{policy}: the bytes under a held lease of {leasedKey} changed at step {step}");
            }

            StoreStats stats = store.GetStats();
            Assert.True(stats.AllocatedBytes <= (long)Blocks * Block, $"{policy}: {stats.AllocatedBytes} bytes allocated in a {Blocks * Block}-byte arena");
            Assert.True(stats.Keys <= Blocks, $"{policy}: {stats.Keys} keys in {Blocks} blocks");
            if (step % 100 == 0)
            {
                for (int k = 0; k < KeySpace; k++)
                {
                    Assert.True(written.ContainsKey($"k{k}") || !store.Exists(Key($"k{k}")), $"{policy}: k{k} present though removed or never put");
                }
            }
        }

        foreach (var h in held) store.Release(h.Lease);
        Assert.Equal(0, store.GetStats().ActiveLeases);
    }
}
