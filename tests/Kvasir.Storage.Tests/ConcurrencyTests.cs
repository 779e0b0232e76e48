using System.Buffers.Binary;
using Kvasir.Protocol;
using static Kvasir.Storage.Tests.TestPayload;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Storage.Tests;

public sealed class ConcurrencyTests
{
    private const int Threads = 4;
    private const int OpsPerThread = 5_000;
    private const int KeyCount = 48;
    private const int Granule = 4096;

    [Theory]
    [InlineData(EvictionPolicyKind.Lru)]
    [InlineData(EvictionPolicyKind.PrefixAware)]
    public void Four_threads_on_overlapping_keys_never_read_a_torn_or_wrong_value_and_leak_nothing(EvictionPolicyKind policy)
    {
        using var store = new KvArenaStore(new StoreOptions
        {
            Capacity = 2L << 20,
            MaxValueBytes = 1 << 20,
            Granule = Granule,
            Eviction = policy,
        });
        var failures = new List<string>();
        using var start = new Barrier(Threads);
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                Assert.True(start.SignalAndWait(TimeSpan.FromSeconds(30)), "not every worker thread reached the start line within 30 s");
                Work(store, t);
            }
            catch (Exception ex)
            {
                lock (failures)
                {
                    failures.Add(ex.ToString());
                }
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        // Bounded, so a deadlock in the store fails the test instead of hanging the run.
        foreach (Thread worker in workers)
        {
            Assert.True(worker.Join(TimeSpan.FromSeconds(60)), "a worker thread did not finish within 60 s (deadlock or livelock in the store?)");
        }

        Assert.Empty(failures);

        StoreStats stats = store.GetStats();
        Assert.Equal(0, stats.Reservations);
        Assert.Equal(0, stats.ActiveLeases);
        long expectedAllocated = 0;
        long expectedLive = 0;
        for (int k = 0; k < KeyCount; k++)
        {
            if (store.TryLease(Key($"key-{k}"), null, out ValueLease? lease) == WireStatus.Ok)
            {
                expectedAllocated += Math.Max(1, (lease!.Length + Granule - 1) / Granule) * Granule;
                expectedLive += lease.Length;
                store.Release(lease);
            }
        }

        stats = store.GetStats();
        Assert.Equal(expectedAllocated, stats.AllocatedBytes);
        Assert.Equal(expectedLive, stats.LiveBytes);
        Assert.True(stats.Puts > 1000, $"only {stats.Puts} puts succeeded");
    }

    /// <summary>
    /// Values start with an 8-byte nonce; the rest is the pattern for (key, nonce). A reader checks the CRC and the
    /// pattern, so a torn value, a value of another key or a reused buffer is caught. Some leases are held across
    /// later operations and checked again at release.
    /// </summary>
    private static void Work(KvArenaStore store, int thread)
    {
        var random = new Random(1000 + thread);
        var held = new Queue<(ValueLease Lease, byte[] Snapshot)>();
        for (int op = 0; op < OpsPerThread; op++)
        {
            int k = random.Next(KeyCount);
            byte[] key = Key($"key-{k}");
            int roll = random.Next(100);
            if (roll < 40)
            {
                PutValue(store, key, k, random, commit: true);
            }
            else if (roll < 45)
            {
                PutValue(store, key, k, random, commit: false);
            }
            else if (roll < 85)
            {
                if (store.TryLease(key, null, out ValueLease? lease) == WireStatus.Ok)
                {
                    Verify(lease!, key);
                    if (held.Count < 3 && random.Next(4) == 0)
                    {
                        held.Enqueue((lease!, lease!.Span.ToArray()));
                    }
                    else
                    {
                        store.Release(lease!);
                    }
                }
            }
            else if (roll < 93)
            {
                store.Remove(key);
            }
            else
            {
                store.Pin(key);
                store.Unpin(key);
            }

            if (held.Count > 0 && random.Next(3) == 0)
            {
                ReleaseHeld(store, held.Dequeue());
            }
        }

        while (held.Count > 0)
        {
            ReleaseHeld(store, held.Dequeue());
        }
    }

    private static void PutValue(KvArenaStore store, byte[] key, int k, Random random, bool commit)
    {
        int length = random.Next(0, 5) == 0 ? random.Next(0, 8) : random.Next(8, 96_000);
        if (store.TryReserve(key, length, out Reservation? reservation) != WireStatus.Ok)
        {
            return; // OutOfMemory is legal when other threads hold leases on most of the arena
        }

        Span<byte> span = reservation!.Span;
        if (length >= 8)
        {
            ulong nonce = (ulong)random.NextInt64();
            BinaryPrimitives.WriteUInt64LittleEndian(span, nonce);
            Fill(span[8..], key, nonce);
        }
        else
        {
            span.Fill((byte)k);
        }

        if (commit)
        {
            store.Commit(reservation, Crc32C.Compute(span), k > 0 ? Key($"key-{k - 1}") : default);
        }
        else
        {
            store.Abort(reservation);
        }
    }

    private static void Verify(ValueLease lease, byte[] key)
    {
        ReadOnlySpan<byte> span = lease.Span;
        Assert.True(Crc32C.Compute(span) == lease.Crc32C, "CRC mismatch: torn or reused value");
        if (span.Length >= 8)
        {
            ulong nonce = BinaryPrimitives.ReadUInt64LittleEndian(span);
            Assert.True(Matches(span[8..], key, nonce), "value does not belong to its key");
        }
    }

    private static void ReleaseHeld(KvArenaStore store, (ValueLease Lease, byte[] Snapshot) entry)
    {
        Assert.True(entry.Lease.Span.SequenceEqual(entry.Snapshot), "a held lease's bytes changed");
        store.Release(entry.Lease);
    }
}
