using System.Text;
using Kvasir.Client;
using Kvasir.Server;
using Kvasir.Storage;

namespace Kvasir.Embedded.Tests;

/// <summary>
/// A node in this process stopped while this process's own calls are copying values in or out of its arena: the
/// arena must outlive every copy, and the calls that come too late must be told the node is gone (a status or a
/// <see cref="KvasirException"/>), not touch freed memory (which kills the process).
/// </summary>
public sealed class EmbeddedLifetimeTests
{
    private const int ValueBytes = 8 << 20;   // a copy of 8 MiB takes a millisecond or more: a stop lands inside one
    private const int Workers = 4;

    private static NodeOptions BigNode() => new() { Port = 0, Store = new StoreOptions { Capacity = 256L << 20, MaxValueBytes = ValueBytes } };

    [Fact]
    public async Task Disposing_an_owned_store_while_its_calls_copy_values_waits_for_the_copies_and_refuses_later_calls()
    {
        var store = EmbeddedKvStore.Start(BigNode());
        await StopUnderTrafficAsync(store, () => store.DisposeAsync().AsTask());
    }

    [Fact]
    public async Task Stopping_a_callers_node_under_an_in_process_store_waits_for_its_copies()
    {
        var node = new CacheNode(BigNode());
        node.Start();
        await using var store = EmbeddedKvStore.InProcess(node);
        await StopUnderTrafficAsync(store, node.StopAsync);
        var late = await store.PutAsync(KvStore.Keys("late"), [new byte[10]]);
        Assert.Equal(KvStatus.Unavailable, late[0]);
        await Assert.ThrowsAsync<KvasirException>(() => store.GetAsync(Encoding.UTF8.GetBytes("late")));
    }

    /// <summary>
    /// Runs <paramref name="stop"/> once every worker of <see cref="StartTraffic"/> is copying values, then checks that each
    /// worker was told the node is gone and never saw a wrong byte.
    /// </summary>
    private static async Task StopUnderTrafficAsync(KvStore store, Func<Task> stop)
    {
        var (workers, started) = StartTraffic(store);
        await Kvasir.TestSupport.Poll.UntilAsync(() => Volatile.Read(ref started[0]) >= Workers * 3, "every worker to complete a few calls");

        await stop();

        var outcomes = await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(outcomes, o => Assert.True(o.Refused, $"a worker ran {o.Calls} calls and was never told the node is gone"));
        Assert.All(outcomes, o => Assert.True(o.Wrong is null, o.Wrong));
    }

    private sealed record Outcome(int Calls, bool Refused, string? Wrong);

    /// <summary>
    /// Workers that get and put 8 MiB values until the node refuses them (at most 10,000 calls each); odd workers put,
    /// even ones get into a buffer and check the bytes. <c>started[0]</c> counts completed calls.
    /// </summary>
    private static (Task<Outcome>[] Workers, int[] Started) StartTraffic(KvStore store)
    {
        var value = new byte[ValueBytes];
        new Random(7).NextBytes(value);
        var key = KvStore.Keys("big");
        Assert.Equal(KvStatus.Ok, store.PutAsync(key, [value]).GetAwaiter().GetResult()[0]);
        var started = new int[1];
        var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
        {
            var dest = new byte[ValueBytes];
            for (int calls = 0; calls < 10_000; calls++)
            {
                // In-process calls complete synchronously, so without this each worker holds a thread-pool thread for its
                // whole loop. A full ./test.sh run on 2 cores (session 16) once saw a worker run all 10,000 calls without
                // being refused; the likely cause (not reproduced in four loaded reruns): the four workers starved the
                // pool, so the test's poll and stop waited for a thread until a worker had finished.
                await Task.Yield();
                try
                {
                    KvStatus status;
                    if (w % 2 == 1) status = (await store.PutAsync(key, [value]))[0];
                    else
                    {
                        var got = (await store.GetAsync(key, [dest]))[0];
                        status = got.Status;
                        if (status == KvStatus.Ok && !dest.AsSpan().SequenceEqual(value)) return new Outcome(calls, false, $"get {calls} returned other bytes");
                    }
                    if (status == KvStatus.Unavailable) return new Outcome(calls, true, null);
                    if (status != KvStatus.Ok && !(w % 2 == 0 && status == KvStatus.NotFound))
                        return new Outcome(calls, false, $"call {calls} answered {status}");
                }
                catch (Exception ex) when (ex is KvasirException or ObjectDisposedException)
                {
                    return new Outcome(calls, true, null);
                }
                Interlocked.Increment(ref started[0]);
            }
            return new Outcome(10_000, false, null);
        })).ToArray();
        return (workers, started);
    }
}
