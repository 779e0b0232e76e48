using Kvasir.Transfer.Internal;

namespace Kvasir.Transfer.Tests;

/// <summary>The engine's thread registry, which Dispose joins while lanes and handshakes may still be starting threads.</summary>
public sealed class ThreadRegistryTests
{
    [Fact]
    public void JoinAll_while_threads_are_being_started_never_meets_an_unstarted_thread()
    {
        // Dispose joining while the listener starts a handshake thread threw ThreadStateException ("Thread has not
        // been started") when the join found the thread registered but not started yet. Bounded: 2,000 starts.
        var registry = new ThreadRegistry();
        var errors = new List<Exception>();
        using var stop = new CancellationTokenSource();
        var joiner = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                try { registry.JoinAll(TimeSpan.FromMilliseconds(50)); }
                catch (Exception e)
                {
                    lock (errors) errors.Add(e);
                }
            }
        });
        joiner.Start();
        for (int i = 0; i < 2000; i++) registry.Start($"t{i}", () => { });
        stop.Cancel();
        joiner.Join();
        Assert.True(registry.JoinAll(TimeSpan.FromSeconds(10)));
        Assert.Empty(errors);
    }
}
