using Kvasir.Client;
using Kvasir.Client.Internal;
using Kvasir.Protocol;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// A large batch striped over several connections (<see cref="KvStoreOptions.StripeBytes"/>): how it is cut, that every
/// value still round-trips byte-exact, chains linked across runs, and the batches that must go whole (a key named twice,
/// a chain to a node that does not link late parents).
/// </summary>
public sealed class StripeTests
{
    private static TestNode StartNode() => TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 256L << 20 } });

    private static Task<KvStore> ConnectAsync(TestNode node, long stripe = 1 << 20, int connections = 4)
        => KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, ConnectionsPerNode = connections, StripeBytes = stripe, Transport = KvTransportKind.Tcp });

    private static ReadOnlyMemory<byte>[] Keys(string prefix, int n) => Enumerable.Range(0, n).Select(i => (ReadOnlyMemory<byte>)TestValues.Key($"{prefix}/{i}")).ToArray();

    [Theory]
    [InlineData(new long[] { 4, 4, 4, 4 }, 4, 1, new[] { 1, 1, 1, 1 })]
    [InlineData(new long[] { 1, 1, 1, 1, 1, 1, 1, 1 }, 4, 1, new[] { 2, 2, 2, 2 })]
    [InlineData(new long[] { 1, 1, 1, 1, 1, 1, 1, 1 }, 4, 3, new[] { 4, 4 })]      // 8 bytes: two runs of at least 3
    [InlineData(new long[] { 1, 1, 1 }, 4, 2, new[] { 3 })]                          // under twice the minimum: whole
    [InlineData(new long[] { 10, 1, 1, 1, 1 }, 4, 1, new[] { 1, 1, 1, 2 })]          // a large first value is a run of its own
    [InlineData(new long[] { 1, 1, 1, 1, 10 }, 3, 1, new[] { 3, 1, 1 })]             // ... and a large last one
    [InlineData(new long[] { 5, 5 }, 1, 1, new[] { 2 })]                             // one connection
    [InlineData(new long[] { 5, 5 }, 4, 0, new[] { 2 })]                             // striping off
    public void A_batch_is_cut_into_contiguous_runs_about_equal_in_bytes(long[] lengths, int most, long minBytes, int[] runLengths)
    {
        var runs = Stripes.Split(0, lengths.Length, most, minBytes, i => lengths[i]);
        Assert.Equal(runLengths, runs.Select(r => r.End - r.Start).ToArray());
        for (int i = 1; i < runs.Count; i++) Assert.Equal(runs[i - 1].End, runs[i].Start);
        Assert.Equal((0, lengths.Length), (runs[0].Start, runs[^1].End));
    }

    [Fact]
    public void Runs_of_a_sub_range_stay_inside_it_and_never_come_out_empty()
    {
        var rng = new Random(21);
        for (int round = 0; round < 2000; round++)
        {
            var lengths = Enumerable.Range(0, rng.Next(1, 40)).Select(_ => (long)rng.Next(0, 5000)).ToArray();
            int start = rng.Next(0, lengths.Length), end = rng.Next(start, lengths.Length + 1);
            int most = rng.Next(1, 9);
            long min = rng.Next(0, 3000);
            var runs = Stripes.Split(start, end, most, min, i => lengths[i]);
            Assert.InRange(runs.Count, 1, Math.Max(1, Math.Min(most, end - start)));
            Assert.Equal(start, runs[0].Start);
            Assert.Equal(end, runs[^1].End);
            for (int i = 0; i < runs.Count; i++)
            {
                if (runs.Count > 1) Assert.True(runs[i].End > runs[i].Start, $"round {round}: run {i} is empty");
                if (i > 0) Assert.Equal(runs[i - 1].End, runs[i].Start);
            }
        }
    }

    [Fact]
    public async Task One_large_batch_goes_as_one_request_per_connection_and_every_value_round_trips()
    {
        await using var node = StartNode();
        await using var store = await ConnectAsync(node);
        var keys = Keys("striped", 16);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(300 + i, (1 << 20) + 4096 * i)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(4, node.Counters.Requests(Opcode.Put));
        Assert.Equal(16, node.Counters.Keys(Opcode.Put));

        var destinations = values.Select(v => (Memory<byte>)new byte[v.Length + 100]).ToArray();
        var results = await store.GetAsync(keys, destinations);
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal(new KvGetResult(KvStatus.Ok, values[i].Length), results[i]);
            Assert.True(values[i].Span.SequenceEqual(destinations[i].Span[..values[i].Length]), $"value {i}");
        }
        Assert.Equal(4, node.Counters.Requests(Opcode.Get));
        Assert.Equal(4, node.Counters.ConnectionsTotal);
    }

    [Fact]
    public async Task Misses_and_too_small_destinations_keep_their_own_statuses_in_a_striped_get()
    {
        await using var node = StartNode();
        await using var store = await ConnectAsync(node);
        var keys = Keys("mixed", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys[..6], values[..6]), s => Assert.Equal(KvStatus.Ok, s));
        var destinations = values.Select((v, i) => (Memory<byte>)new byte[i == 2 ? v.Length - 1 : v.Length]).ToArray();
        var results = await store.GetAsync(keys, destinations);
        Assert.Equal([KvStatus.Ok, KvStatus.Ok, KvStatus.BufferTooSmall, KvStatus.Ok, KvStatus.Ok, KvStatus.Ok, KvStatus.NotFound, KvStatus.NotFound],
            results.Select(r => r.Status).ToArray());
        foreach (int i in new[] { 0, 1, 3, 4, 5 }) Assert.True(values[i].Span.SequenceEqual(destinations[i].Span), $"value {i}");
        Assert.True(node.Counters.Requests(Opcode.Get) > 1, "the GET was not striped");
    }

    [Fact]
    public async Task A_put_that_names_a_key_twice_goes_whole_so_the_last_value_wins()
    {
        await using var node = StartNode();
        await using var store = await ConnectAsync(node);
        var keys = Keys("twice", 8);
        keys[7] = keys[0];
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(50 + i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(1, node.Counters.Requests(Opcode.Put));
        Assert.Equal(values[7].ToArray(), await store.GetAsync(keys[0]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1 << 20)]
    public async Task A_put_that_names_a_key_twice_in_two_requests_still_stores_the_last_value(long stripe)
    {
        // Two keys a request: the first value goes after a large value in one request, the last in a small request after
        // it. Sent at once on two connections (or striped), the small one was stored first and the earlier value won.
        await using var node = TestNode.Start(new NodeOptions { Port = 0, MaxBatchKeys = 2, Store = new StoreOptions { Capacity = 256L << 20 } });
        await using var store = await ConnectAsync(node, stripe);
        for (int round = 0; round < 4; round++)
        {
            var k = TestValues.Key($"again/{round}");
            var first = TestValues.Value(round, 1 << 20);
            var last = TestValues.Value(100 + round, 1000);
            ReadOnlyMemory<byte>[] keys = [TestValues.Key($"big/{round}"), k, k];
            ReadOnlyMemory<byte>[] values = [TestValues.Value(200 + round, 8 << 20), first, last];
            Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
            Assert.Equal(last, await store.GetAsync(k));
        }
    }

    [Fact]
    public async Task A_chain_put_is_striped_and_its_runs_form_one_chain_that_is_evicted_from_its_tail()
    {
        // Prefix-aware eviction takes the oldest leaf: linked into one chain, the chain's only leaf is its last block, so
        // fillers eat it from its tail and what is left is always a prefix. Runs left unlinked (each run's first block a
        // root) would leave every run's last block a leaf, and whichever run was stored first would lose its tail first.
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 24L << 20, MaxValueBytes = 2 << 20, Eviction = EvictionPolicyKind.PrefixAware },
        });
        await using var store = await ConnectAsync(node);
        var keys = Keys("chain", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(70 + i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(4, node.Counters.Requests(Opcode.Put));
        Assert.Equal(0, node.Stats.LateParentWaits);
        Assert.Equal(new[] { 1, 1, 1, 1, 1, 1, 1, 1 }, await store.ExistsChainAsync(keys));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));

        for (int f = 0; f < 100 && (await store.ExistsAsync([keys[0]]))[0] == 1; f++)
        {
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([TestValues.Key($"filler/{f}")], [TestValues.Value(900 + f, 1 << 20)]))[0]);
            var present = await store.ExistsAsync(keys);
            int stored = present.TakeWhile(p => p == 1).Count();
            Assert.True(present.Skip(stored).All(p => p == 0), $"after {f + 1} fillers the chain has a hole: {string.Join("", present)}");
        }
        Assert.Equal(0, (await store.ExistsAsync([keys[0]]))[0]);   // the fillers evicted the whole chain
    }

    [Fact]
    public async Task A_chain_put_goes_whole_to_a_node_that_does_not_link_late_parents()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 256L << 20 }, WithheldFeatures = ProtocolFeatures.LateParent });
        await using var store = await ConnectAsync(node);
        var keys = Keys("chain", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(70 + i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values, new PutOptions { Chain = true }), s => Assert.Equal(KvStatus.Ok, s));
        Assert.Equal(1, node.Counters.Requests(Opcode.Put));
        Assert.Equal(new[] { 1, 1, 1, 1, 1, 1, 1, 1 }, await store.ExistsChainAsync(keys));
    }

    [Fact]
    public async Task Striping_off_or_small_batches_go_as_one_request_on_one_connection()
    {
        await using var node = StartNode();
        await using (var off = await ConnectAsync(node, stripe: 0))
        {
            var keys = Keys("off", 8);
            var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 1 << 20)).ToArray();
            Assert.All(await off.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
            Assert.All(await off.GetAsync(keys, values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray()), r => Assert.Equal(KvStatus.Ok, r.Status));
        }
        await using (var small = await ConnectAsync(node))
        {
            var keys = Keys("small", 16);
            var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 64 << 10)).ToArray();   // 1 MiB in all: under twice the stripe
            Assert.All(await small.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
            Assert.All(await small.GetAsync(keys, values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray()), r => Assert.Equal(KvStatus.Ok, r.Status));
        }
        Assert.Equal(2, node.Counters.Requests(Opcode.Put));
        Assert.Equal(2, node.Counters.Requests(Opcode.Get));
        Assert.Equal(2, node.Counters.ConnectionsTotal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // each lane's next batch is striped from a connection's reader, its last run sent from there
    public async Task Lanes_that_each_send_large_batches_at_once_round_trip_every_value(bool inlineCompletions)
    {
        await using var node = StartNode();
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = node.Address,
            ConnectionsPerNode = 4,
            StripeBytes = 256 << 10,
            Transport = KvTransportKind.Tcp,
            InlineCompletions = inlineCompletions,
        });
        // Eight lanes on four connections: stripes of one lane land on connections busy with another's, and queue there.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(lane => Task.Run(async () =>
        {
            for (int round = 0; round < 6; round++)
            {
                var keys = Keys($"lane{lane}/{round}", 6);
                var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(lane * 100 + round * 10 + i, (512 << 10) + i * 777)).ToArray();
                Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
                var destinations = values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray();
                Assert.All(await store.GetAsync(keys, destinations), r => Assert.Equal(KvStatus.Ok, r.Status));
                for (int i = 0; i < keys.Length; i++) Assert.True(values[i].Span.SequenceEqual(destinations[i].Span), $"lane {lane} round {round} value {i}");
            }
        })));
        Assert.InRange(node.Counters.ConnectionsTotal, 1, 4);
    }

    [Fact]
    public async Task A_node_that_refuses_more_connections_still_stores_and_serves_every_key_of_a_striped_batch_and_is_not_asked_again_for_each()
    {
        // A node at its connection limit (here: one per client address) closes every further connection at HELLO. The
        // runs whose slot had no connection yet then went to no connection at all: their keys came back Unavailable
        // while the connection the store already held sat idle. They go over an open connection instead.
        // And every striped batch tried to open the slots it lacked, so a node at its limit was sent three connections to
        // refuse (each a TCP handshake, an accept and a warning) for every batch of a busy client, for as long as the
        // client ran. After a refusal, while another connection serves, the store holds back from opening more: one
        // probe when the back-off (1 s, doubling to 30 s) has passed.
        await using var node = TestNode.Start(new NodeOptions { Port = 0, MaxConnectionsPerAddress = 1, Store = new StoreOptions { Capacity = 256L << 20 } });
        await using var store = await ConnectAsync(node);
        var keys = Keys("refused", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(900 + i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        var destinations = values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray();
        for (int round = 0; round < 20; round++)
        {
            var results = await store.GetAsync(keys, destinations);
            for (int i = 0; i < keys.Length; i++)
            {
                Assert.Equal(new KvGetResult(KvStatus.Ok, values[i].Length), results[i]);
                Assert.True(values[i].Span.SequenceEqual(destinations[i].Span), $"round {round} value {i}");
            }
        }
        Assert.True(node.Counters.ConnectionsRefused > 0, "the node refused no connection: the batch was not striped");
        // The PUT's three slots, then at most one probe per back-off window: the 20 batches take well under the 63 s that
        // six windows would need. Without the back-off: three refusals a batch, 63.
        Assert.InRange(node.Counters.ConnectionsRefused, 1, 8);
        Assert.Equal(1, node.Counters.ConnectionsTotal);
    }

    [Fact]
    public async Task A_store_held_back_by_a_refusal_opens_its_connection_once_the_node_has_room_again()
    {
        // The back-off must end: once its window has passed, one opening is tried, and a node that has room again (here:
        // another client left) gets the connection.
        await using var node = TestNode.Start(new NodeOptions { Port = 0, MaxConnectionsPerAddress = 2, Store = new StoreOptions { Capacity = 256L << 20 } });
        var other = await ConnectAsync(node, stripe: 0);
        await using var store = await ConnectAsync(node);
        var keys = Keys("room-again", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(990 + i, 1 << 20)).ToArray();
        Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(node.Counters.ConnectionsRefused > 0, "the node refused no connection: the batch was not striped");
        Assert.Equal(2, node.Counters.ConnectionsTotal);
        await other.DisposeAsync();
        for (int i = 0; i < 200 && node.Counters.Connections > 1; i++) await Task.Delay(25);
        Assert.Equal(1, node.Counters.Connections);
        await Task.Delay(OpenBackoff.FirstWindowMs + 250);
        var destinations = values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray();
        Assert.All(await store.GetAsync(keys, destinations), r => Assert.Equal(KvStatus.Ok, r.Status));
        for (int i = 0; i < keys.Length; i++) Assert.True(values[i].Span.SequenceEqual(destinations[i].Span), $"value {i}");
        Assert.Equal(3, node.Counters.ConnectionsTotal);   // the probe's: the other runs of that batch waited for its answer
    }

    [Fact]
    public async Task Requests_in_flight_together_against_a_node_that_refuses_more_connections_all_go_over_the_one_it_accepted()
    {
        // Not striping, the same rule: a request that found every open connection busy opened a slot of its own, and
        // when the node refused it the request's keys were Unavailable.
        await using var node = TestNode.Start(new NodeOptions { Port = 0, MaxConnectionsPerAddress = 1, Store = new StoreOptions { Capacity = 256L << 20 } });
        await using var store = await ConnectAsync(node, stripe: 0);
        var keys = Keys("together", 8);
        var values = keys.Select((_, i) => TestValues.Value(950 + i, 1 << 20)).ToArray();
        var statuses = await Task.WhenAll(keys.Select((k, i) => store.PutAsync([k], [values[i]])));
        Assert.All(statuses, s => Assert.Equal([KvStatus.Ok], s));
        var read = await Task.WhenAll(keys.Select(k => store.GetAsync(k)));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], read[i]);
        Assert.True(node.Counters.ConnectionsRefused > 0, "the node refused no connection: no request looked for a second one");
        Assert.Equal(1, node.Counters.ConnectionsTotal);
    }

    [Fact]
    public async Task A_run_whose_connection_is_cut_reports_its_own_keys_unavailable_and_the_other_runs_are_stored()
    {
        await using var node = StartNode();
        // The store's first connection is the relay's first; the striped PUT opens three more and the second one is cut
        // as its PUT arrives, before the node sees any of it.
        await using var relay = FrameRelay.Start(node.Port, cutConnection: 2);
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = $"127.0.0.1:{relay.Port}",
            ConnectionsPerNode = 4,
            StripeBytes = 1 << 20,
            Transport = KvTransportKind.Tcp,
        });
        var keys = Keys("cut", 8);
        var values = keys.Select((_, i) => TestValues.Value(600 + i, 1 << 20)).ToArray();
        var statuses = await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray());
        Assert.Equal(1, relay.Cuts);
        var lost = Enumerable.Range(0, keys.Length).Where(i => statuses[i] != KvStatus.Ok).ToArray();
        Assert.NotEmpty(lost);
        Assert.True(lost.Length < keys.Length, "every run failed, not just the one whose connection was cut");
        Assert.All(lost, i => Assert.Equal(KvStatus.Unavailable, statuses[i]));
        Assert.Equal(Enumerable.Range(lost[0], lost.Length), lost);   // one contiguous run
        for (int i = 0; i < keys.Length; i++)
            Assert.Equal(lost.Contains(i) ? null : values[i], await store.GetAsync(keys[i]));
        // The broken slot is replaced: the lost keys are stored on the next try.
        Assert.All(await store.PutAsync(lost.Select(i => keys[i]).ToArray(), lost.Select(i => (ReadOnlyMemory<byte>)values[i]).ToArray()),
            s => Assert.Equal(KvStatus.Ok, s));
        foreach (int i in lost) Assert.Equal(values[i], await store.GetAsync(keys[i]));
    }

    [Fact]
    public async Task A_store_disposed_while_its_striped_batches_open_connections_reports_keys_and_leaves_no_connection_open()
    {
        await using var node = StartNode();
        var keys = Keys("disposed", 8);
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(1000 + i, 1 << 20)).ToArray();
        for (int round = 0; round < 12; round++)
        {
            var store = await ConnectAsync(node);
            // Three of the four runs open their connection as the store is disposed: each is closed by the dispose or
            // never opened, and the call still answers every key.
            var put = store.PutAsync(keys, values);
            for (int i = 0; i < round % 4; i++) await Task.Yield();
            await store.DisposeAsync();
            var statuses = await put;
            Assert.All(statuses, s => Assert.Contains(s, new[] { KvStatus.Ok, KvStatus.Unavailable }));
        }
        await Poll.UntilAsync(() => node.Counters.Connections == 0, () => $"every connection closed (open: {node.Counters.Connections})");
    }

    private static long Mismatches(TestNode node) => node.Node.StatsSnapshot().Single(s => s.Key == "crc_mismatches").Value;

    private static Task<KvStore> ConnectAsync(FrameRelay relay)
        => KvStore.ConnectAsync(new KvStoreOptions { Server = $"127.0.0.1:{relay.Port}", ConnectionsPerNode = 4, StripeBytes = 1 << 20, Transport = KvTransportKind.Tcp });

    [Fact]
    public async Task Each_run_of_a_striped_put_to_a_node_without_the_trailer_carries_its_own_computed_crcs_and_the_ttl()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port, hideFeatures: ProtocolFeatures.CrcTrailer);
        await using var store = await ConnectAsync(relay);
        var keys = Keys("entries", 8);
        var values = keys.Select((_, i) => TestValues.Value(700 + i, (1 << 20) + 333 * i)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray(), new PutOptions { Ttl = TimeSpan.FromHours(1) }),
            s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(relay.PutFlags.Length > 1, "the PUT was not striped");
        Assert.All(relay.PutFlags, f => Assert.Equal(FrameFlags.ValueCrc | FrameFlags.Ttl, f));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
        Assert.Equal(0L, Mismatches(node));
    }

    [Fact]
    public async Task Crcs_the_caller_gives_for_a_striped_put_go_with_their_own_keys_and_a_wrong_one_is_a_miss_alone()
    {
        await using var node = StartNode();
        await using var relay = FrameRelay.Start(node.Port);
        await using var store = await ConnectAsync(relay);
        var keys = Keys("given", 8);
        var values = keys.Select((_, i) => TestValues.Value(800 + i, 1 << 20)).ToArray();
        var crcs = values.Select((v, i) => Crc32C.Compute(v) ^ (i == 6 ? 0xFFu : 0)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray(), new PutOptions { ValueCrc32C = crcs }),
            s => Assert.Equal(KvStatus.Ok, s));
        Assert.True(relay.PutFlags.Length > 1, "the PUT was not striped");
        Assert.All(relay.PutFlags, f => Assert.Equal(FrameFlags.ValueCrc, f));
        for (int i = 0; i < keys.Length; i++) Assert.Equal(i == 6 ? null : values[i], await store.GetAsync(keys[i]));
        Assert.Equal(1L, Mismatches(node));
    }

    [Fact]
    public async Task A_negative_stripe_size_is_refused_with_the_reason()
    {
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions { Server = "127.0.0.1:1", StripeBytes = -1 }));
        Assert.Contains("StripeBytes", ex.Message);
    }
}
