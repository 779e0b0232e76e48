using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Client.Tests;

/// <summary>
/// How the TCP transport uses its connections: which one a request goes to, and where the caller resumes
/// (<see cref="KvStoreOptions.InlineCompletions"/>).
/// </summary>
public sealed class TcpConnectionUseTests
{
    private static TestNode StartNode() => TestNode.Start(new NodeOptions { Port = 0, Store = new StoreOptions { Capacity = 128L << 20 } });

    [Fact]
    public async Task A_caller_with_one_request_at_a_time_keeps_to_one_connection()
    {
        await using var node = StartNode();
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, ConnectionsPerNode = 4, Transport = KvTransportKind.Tcp });
        for (int i = 0; i < 12; i++)
        {
            var key = TestValues.Key($"one/{i}");
            var value = TestValues.Value(i, 64 * 1024);
            Assert.Equal([KvStatus.Ok], await store.PutAsync([key], [value]));
            Assert.Equal(value, await store.GetAsync(key));
        }
        // Round robin over the pool opened all four; an idle open connection is taken first instead.
        Assert.Equal(1, node.Node.Counters.ConnectionsTotal);
    }

    [Fact]
    public async Task Requests_in_flight_together_open_more_connections_and_every_value_round_trips()
    {
        await using var node = StartNode();
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Address, ConnectionsPerNode = 4, Transport = KvTransportKind.Tcp });
        var keys = Enumerable.Range(0, 8).Select(i => (ReadOnlyMemory<byte>)TestValues.Key($"many/{i}")).ToArray();
        var values = Enumerable.Range(0, 8).Select(i => TestValues.Value(100 + i, 1 << 20)).ToArray();
        for (int round = 0; round < 4; round++)
        {
            var statuses = await Task.WhenAll(keys.Select((k, i) => store.PutAsync([k], [values[i]])));
            Assert.All(statuses, s => Assert.Equal([KvStatus.Ok], s));
            var read = await Task.WhenAll(keys.Select(k => store.GetAsync(k)));
            for (int i = 0; i < keys.Length; i++) Assert.Equal(values[i], read[i]);
        }
        Assert.InRange(node.Node.Counters.ConnectionsTotal, 2, 4);
    }

    [Fact]
    public async Task With_inline_completions_lanes_that_issue_the_next_request_from_the_continuation_round_trip_every_value()
    {
        await using var node = StartNode();
        await using var store = await KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = node.Address,
            ConnectionsPerNode = 2,
            Transport = KvTransportKind.Tcp,
            InlineCompletions = true,
        });
        // Four lanes on two connections: each lane's next request is sent from the continuation of its last reply,
        // which runs on a connection's reader, so requests are sent while that reader is inside a completion.
        await Task.WhenAll(Enumerable.Range(0, 4).Select(lane => Task.Run(async () =>
        {
            for (int i = 0; i < 30; i++)
            {
                var keys = Enumerable.Range(0, 4).Select(j => (ReadOnlyMemory<byte>)TestValues.Key($"lane{lane}/{i}/{j}")).ToArray();
                var values = Enumerable.Range(0, 4).Select(j => (ReadOnlyMemory<byte>)TestValues.Value(lane * 1000 + i * 10 + j, 40_000 + j)).ToArray();
                Assert.All(await store.PutAsync(keys, values), s => Assert.Equal(KvStatus.Ok, s));
                var destinations = values.Select(v => (Memory<byte>)new byte[v.Length]).ToArray();
                var results = await store.GetAsync(keys, destinations);
                for (int j = 0; j < keys.Length; j++)
                {
                    Assert.Equal(KvStatus.Ok, results[j].Status);
                    Assert.True(values[j].Span.SequenceEqual(destinations[j].Span), $"lane {lane} request {i} value {j}");
                }
                var present = await store.ExistsAsync(keys);
                Assert.Equal(new[] { 1, 1, 1, 1 }, present);
            }
        })));
    }

    [Fact]
    public void Inline_completions_are_kept_for_every_node_of_a_cluster()
    {
        var options = new KvStoreOptions { Server = "127.0.0.1:1,127.0.0.1:2", InlineCompletions = true };
        Assert.True(options.ForNode("127.0.0.1:2").InlineCompletions);
        Assert.False(new KvStoreOptions().InlineCompletions);
    }
}
