using System.Diagnostics;
using Kvasir.Client.Internal;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>
/// The rule of docs/protocol.md § Ownership and timeouts: a shared-memory copy that ends within
/// <see cref="ShmTransport.TrustedCopyWindow"/> (90% of the node's lease timeout, from SHM_INFO) of
/// LEASE or ALLOC is trusted; a later one is trusted only
/// when the node still held the lease or reservation. Copies are made to look slow with a clock that
/// jumps; where the node must really have expired something, the test waits for it (≤ 3 s, polled).
/// </summary>
public sealed class ShmTimeoutTests
{
    private static TestNode StartNode(TimeSpan leaseTimeout) => TestNode.Start(new NodeOptions
    {
        Port = 0,
        Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20, LeaseTimeout = leaseTimeout },
        SharedMemory = true,
    });

    private static async Task<(TcpTransport Tcp, ShmTransport Shm)> ConnectAsync(TestNode node, TimeProvider clock)
    {
        var tcp = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", ConnectionsPerNode = 1 }, default);
        var (mapping, reason) = await ShmNegotiation.TryMapAsync(tcp, "127.0.0.1", default);
        Assert.True(mapping is not null, reason);
        return (tcp, new ShmTransport(tcp, mapping) { Clock = clock });
    }

    private static async Task<KvStatus[]> PutAsync(IKvTransport transport, ReadOnlyMemory<byte>[] keys, byte[][] values)
    {
        var batch = new PutBatch(keys, [.. values.Select(v => new ValueSource(v))]);
        await transport.PutAsync(batch, 0, keys.Length, chain: false, default, hasParent: false, default);
        return batch.Results;
    }

    private static async Task<GetBatch> GetAsync(IKvTransport transport, params ReadOnlyMemory<byte>[] keys)
    {
        var batch = new GetBatch(keys, [.. keys.Select(_ => ValueDestination.Allocating)]);
        await transport.GetAsync(batch, 0, keys.Length, default);
        return batch;
    }

    private static Task NoLeaksAsync(TestNode node) => node.WaitForNoLeaksAsync(TimeSpan.FromSeconds(5));

    [Fact]
    public async Task A_fast_get_trusts_its_copy_and_leaves_release_unawaited_on_a_real_clock()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(30));
        var clock = new JumpingClock(jumpAt: int.MaxValue, TimeSpan.Zero);
        var (tcp, shm) = await ConnectAsync(node, clock);
        await using (shm)
        {
            Assert.Equal([KvStatus.Ok], await PutAsync(tcp, [Key("k")], [TestValues.Value(1, 70_000)]));
            var got = await GetAsync(shm, Key("k"));
            Assert.Equal(new KvGetResult(KvStatus.Ok, 70_000), got.Results[0]);
            Assert.Equal(TestValues.Value(1, 70_000), got.Allocated[0]);
            Assert.Equal(2, clock.Readings);   // before LEASE, after the copy
        }
        await NoLeaksAsync(node);
    }

    [Fact]
    public async Task A_get_whose_copy_looks_slow_awaits_release_and_with_the_lease_still_held_returns_the_bytes()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(30));
        // Reading 1 is taken before LEASE, reading 2 after the copy: 40 s later as far as the client
        // can tell, past the 27 s it trusts on a node whose lease timeout is 30 s.
        var (tcp, shm) = await ConnectAsync(node, new JumpingClock(jumpAt: 2, TimeSpan.FromSeconds(40)));
        await using (shm)
        {
            Assert.Equal([KvStatus.Ok, KvStatus.Ok], await PutAsync(tcp, [Key("a"), Key("b")], [TestValues.Value(1, 70_000), TestValues.Value(2, 5)]));
            var got = await GetAsync(shm, Key("a"), Key("missing"), Key("b"));
            Assert.Equal([new KvGetResult(KvStatus.Ok, 70_000), new KvGetResult(KvStatus.NotFound, 0), new KvGetResult(KvStatus.Ok, 5)], got.Results);
            Assert.Equal(TestValues.Value(1, 70_000), got.Allocated[0]);
            Assert.Equal(TestValues.Value(2, 5), got.Allocated[2]);
            // RELEASE's reply was awaited: the node had handled it before the call returned.
            Assert.Equal(1, node.Counters.Requests(Opcode.Release));
            Assert.Equal(0, node.Store.GetStats().ActiveLeases);
        }
        await NoLeaksAsync(node);
    }

    [Fact]
    public async Task A_get_whose_lease_the_node_expired_before_release_reports_timeout_and_drops_the_bytes()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(1));
        // After the copy, the client stalls until the node's reaper has really taken the leases back.
        var clock = new JumpingClock(jumpAt: 2, TimeSpan.FromSeconds(2), atJump: () => Poll.Until(() =>
        {
            node.Store.ReapExpiredLeases();
            return node.Store.GetStats().ActiveLeases == 0;
        }, "the node to expire the GET's leases", TimeSpan.FromSeconds(3)));
        var (tcp, shm) = await ConnectAsync(node, clock);
        await using (shm)
        {
            Assert.Equal([KvStatus.Ok, KvStatus.Ok], await PutAsync(tcp, [Key("a"), Key("b")], [TestValues.Value(1, 70_000), TestValues.Value(2, 5)]));
            var got = await GetAsync(shm, Key("a"), Key("missing"), Key("b"));
            Assert.Equal([new KvGetResult(KvStatus.Timeout, 0), new KvGetResult(KvStatus.NotFound, 0), new KvGetResult(KvStatus.Timeout, 0)], got.Results);
            Assert.Null(got.Allocated[0]);
            Assert.Null(got.Allocated[2]);
            Assert.Equal(1, node.Counters.Requests(Opcode.Release));
        }
        await NoLeaksAsync(node);
    }

    [Fact]
    public async Task Release_of_a_lease_the_node_expired_answers_not_found()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(1));
        await using var tcp = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}" }, default);
        Assert.Equal([KvStatus.Ok], await PutAsync(tcp, [Key("k")], [TestValues.Value(1, 100)]));
        await using var raw = await ClientConnection.OpenAsync("127.0.0.1", node.Port, null, null, "raw", TimeSpan.FromSeconds(5), default);
        var leased = ShmMessages.ReadLeaseReply(await raw.CallAsync(Opcode.Lease, TcpTransport.KeyBatchMeta([Key("k"), Key("k")], 0, 2), default));
        Assert.All(leased, e => Assert.Equal(WireStatus.Ok, e.Status));
        Assert.Equal([WireStatus.Ok], await ReleaseAsync(raw, leased[0].LeaseId));
        await Poll.UntilAsync(() => { node.Store.ReapExpiredLeases(); return node.Store.GetStats().ActiveLeases == 0; }, "the node to expire the lease", TimeSpan.FromSeconds(3));
        Assert.Equal([WireStatus.NotFound, WireStatus.NotFound], await ReleaseAsync(raw, leased[1].LeaseId, leased[0].LeaseId));
    }

    private static async Task<WireStatus[]> ReleaseAsync(ClientConnection raw, params ulong[] ids)
    {
        var meta = new byte[ShmMessages.IdListSize(ids.Length)];
        var w = new MetaWriter(meta);
        ShmMessages.WriteIdList(ref w, ids);
        return StatusListReply.Read(await raw.CallAsync(Opcode.Release, meta, default), ids.Length);
    }

    [Fact]
    public async Task A_put_whose_alloc_looks_too_old_copies_nothing_commits_nothing_and_the_node_drops_the_reservations()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(1));
        // Reading 1 is taken before ALLOC, reading 2 before the first copy.
        var (tcp, shm) = await ConnectAsync(node, new JumpingClock(jumpAt: 2, TimeSpan.FromSeconds(2)));
        await using (shm)
        {
            Assert.Equal([KvStatus.Ok], await PutAsync(tcp, [Key("old")], [TestValues.Value(1, 3000)]));
            var statuses = await PutAsync(shm, [Key("old"), Key("new")], [TestValues.Value(2, 3000), TestValues.Value(3, 70_000)]);
            Assert.Equal([KvStatus.Timeout, KvStatus.Timeout], statuses);
            Assert.Equal(0, node.Counters.Requests(Opcode.Commit));
            Assert.Equal(2, node.Store.GetStats().Reservations);   // held until the node's timer aborts them
            await Poll.UntilAsync(async () => await ReservationsAsync(tcp) == 0, "STATS reservations back to 0 after the lease timeout", TimeSpan.FromSeconds(3));
            // Nothing published: the old value stays, the new key does not exist.
            var got = await GetAsync(tcp, Key("old"), Key("new"));
            Assert.Equal([new KvGetResult(KvStatus.Ok, 3000), new KvGetResult(KvStatus.NotFound, 0)], got.Results);
            Assert.Equal(TestValues.Value(1, 3000), got.Allocated[0]);
        }
        await NoLeaksAsync(node);
    }

    private static async Task<long> ReservationsAsync(TcpTransport tcp) =>
        (await tcp.StatsAsync(default)).Single(s => s.Key == "reservations").Value;

    [Fact]
    public async Task A_put_that_runs_out_of_time_mid_batch_commits_what_it_copied_in_time_and_reports_timeout_for_the_rest()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(1));
        // Readings: 1 before ALLOC, 2 before copying "a" (in time), 3 before copying "b" (2 s later).
        var (tcp, shm) = await ConnectAsync(node, new JumpingClock(jumpAt: 3, TimeSpan.FromSeconds(2)));
        await using (shm)
        {
            var statuses = await PutAsync(shm, [Key("a"), Key("b"), Key("c")], [TestValues.Value(1, 4096), TestValues.Value(2, 4096), TestValues.Value(3, 1)]);
            Assert.Equal([KvStatus.Ok, KvStatus.Timeout, KvStatus.Timeout], statuses);
            Assert.Equal(1, node.Counters.Keys(Opcode.Commit));
            var got = await GetAsync(tcp, Key("a"), Key("b"), Key("c"));
            Assert.Equal([new KvGetResult(KvStatus.Ok, 4096), new KvGetResult(KvStatus.NotFound, 0), new KvGetResult(KvStatus.NotFound, 0)], got.Results);
            Assert.Equal(TestValues.Value(1, 4096), got.Allocated[0]);
        }
        await NoLeaksAsync(node);
    }

    [Fact]
    public async Task A_put_whose_reservation_the_node_expired_before_commit_reports_timeout_and_publishes_nothing()
    {
        await using var node = StartNode(TimeSpan.FromSeconds(1));
        // Before the copy, the client stalls until the node has aborted the reservation, and its clock hides
        // the stall (as a copy that began in time and ran late would): the COMMIT reply must catch it.
        var clock = new JumpingClock(jumpAt: 2, TimeSpan.FromSeconds(-3), atJump: () =>
            Poll.Until(() => node.Store.GetStats().Reservations == 0, "the node to abort the PUT's reservation", TimeSpan.FromSeconds(3)));
        var (tcp, shm) = await ConnectAsync(node, clock);
        await using (shm)
        {
            Assert.Equal([KvStatus.Timeout], await PutAsync(shm, [Key("k")], [TestValues.Value(1, 4096)]));
            Assert.Equal(1, node.Counters.Requests(Opcode.Commit));
            Assert.Equal(KvStatus.NotFound, (await GetAsync(tcp, Key("k"))).Results[0].Status);
        }
        await NoLeaksAsync(node);
    }

    /// <summary>Real time, plus <paramref name="jump"/> from the <paramref name="jumpAt"/>-th reading on (1-based); <paramref name="atJump"/> runs at that reading.</summary>
    private sealed class JumpingClock(int jumpAt, TimeSpan jump, Action? atJump = null) : TimeProvider
    {
        private int _readings;

        public int Readings => Volatile.Read(ref _readings);

        public override long GetTimestamp()
        {
            int n = Interlocked.Increment(ref _readings);
            if (n == jumpAt) atJump?.Invoke();
            long now = Stopwatch.GetTimestamp();
            return n >= jumpAt ? now + (long)(jump.TotalSeconds * Stopwatch.Frequency) : now;
        }
    }
}

/// <summary>
/// The per-connection reservation budget (docs/protocol.md § Ownership and timeouts) learns a smaller share from a key
/// refused while the connection held other reservations. A refusal because the arena itself was full (pinned values,
/// other clients' reservations) teaches it the same way, so what it learnt is forgotten after a while.
/// </summary>
public sealed class ReservationBudgetRecoveryTests
{
    [Fact]
    public async Task A_budget_learnt_from_a_full_arena_is_forgotten_so_later_puts_go_in_one_alloc_again()
    {
        // Before: a refusal while the arena was full of pinned values shrank the connection's budget for good, to what
        // the node had accepted (two values here), and every later put on the connection went two values per ALLOC/COMMIT.
        const int Block = 64 * 1024;
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 8L << 20, MaxValueBytes = 1L << 20 },
            SharedMemory = true,
        });
        var clock = new ShiftedClock();
        var tcp = await TcpTransport.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{node.Port}", ConnectionsPerNode = 1 }, default);
        var (mapping, reason) = await ShmNegotiation.TryMapAsync(tcp, "127.0.0.1", default);
        Assert.True(mapping is not null, reason);
        await using var shm = new ShmTransport(tcp, mapping) { Clock = clock };

        // Pinned values until the arena has no room for one more; then two of them go.
        var pinned = new List<ReadOnlyMemory<byte>>();
        for (int i = 0; ; i++)
        {
            Assert.True(i < 200, "200 pinned 64 KiB values did not fill an 8 MiB arena");
            var key = Key($"pinned/{i}");
            var put = new PutBatch([key], [new ValueSource(TestValues.Value(i, Block))]);
            await tcp.PutAsync(put, 0, 1, chain: false, default, hasParent: false, default);
            if (put.Results[0] == KvStatus.OutOfMemory) break;
            Assert.Equal(KvStatus.Ok, put.Results[0]);
            var pin = new KvStatus[1];
            await tcp.KeyOpAsync(Opcode.Pin, [key], 0, 1, pin, default);
            Assert.Equal(KvStatus.Ok, pin[0]);
            pinned.Add(key);
        }
        var removed = new KvStatus[2];
        await tcp.KeyOpAsync(Opcode.Remove, pinned.Take(2).ToList(), 0, 2, removed, default);
        Assert.Equal([KvStatus.Ok, KvStatus.Ok], removed);

        long burstAllocs = node.Counters.Requests(Opcode.Alloc);
        var burst = Batch("burst", 24);
        await shm.PutAsync(burst, 0, 24, chain: false, default, hasParent: false, default);
        Assert.All(burst.Results, s => Assert.Equal(KvStatus.Ok, s));
        // The node took two values, refused the third while they were held: the budget learnt two values, and the rest
        // went two per ALLOC (each evicting the burst's values before it).
        Assert.True(node.Counters.Requests(Opcode.Alloc) - burstAllocs > 1, "the full arena did not make the budget learn");

        var unpinned = new KvStatus[pinned.Count];
        await tcp.KeyOpAsync(Opcode.Unpin, pinned, 0, pinned.Count, unpinned, default);
        clock.Shift = TimeSpan.FromMinutes(2);
        long allocs = node.Counters.Requests(Opcode.Alloc);
        var later = Batch("later", 16);
        await shm.PutAsync(later, 0, 16, chain: false, default, hasParent: false, default);
        Assert.All(later.Results, s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(1, node.Counters.Requests(Opcode.Alloc) - allocs);

        static PutBatch Batch(string name, int count) => new(
            Enumerable.Range(0, count).Select(i => Key($"{name}/{i}")).ToArray(),
            Enumerable.Range(0, count).Select(i => new ValueSource(TestValues.Value(1000 + i, Block))).ToArray());
    }

    /// <summary>Real time plus <see cref="Shift"/>.</summary>
    private sealed class ShiftedClock : TimeProvider
    {
        public TimeSpan Shift { get; set; }

        public override long GetTimestamp() => Stopwatch.GetTimestamp() + (long)(Shift.TotalSeconds * Stopwatch.Frequency);
    }
}
