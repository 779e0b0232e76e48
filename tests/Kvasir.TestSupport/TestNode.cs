using Kvasir.Server;
using Kvasir.Storage;
using Microsoft.Extensions.Logging;

namespace Kvasir.TestSupport;

/// <summary>
/// A real node on 127.0.0.1, port 0, for one test. On dispose it waits (with a deadline) until no arena
/// reservation or lease is left, failing the test with what it waited for, then stops the node, which
/// it stops even when the check fails.
/// </summary>
public sealed class TestNode : IAsyncDisposable
{
    private TestNode(CacheNode node) => Node = node;

    public CacheNode Node { get; }

    public int Port => Node.Port;

    /// <summary>host:port for a client.</summary>
    public string Address => $"127.0.0.1:{Node.Port}";

    public TieredStore Store => Node.Store;

    public StoreStats Stats => Node.Store.GetStats();

    public NodeCounters Counters => Node.Counters;

    /// <summary>Set when a test stopped the node itself (the store is gone; nothing left to check).</summary>
    public bool Stopped { get; set; }

    /// <summary>Starts a node; <paramref name="options"/> must say port 0 on 127.0.0.1, so tests never collide on a port.</summary>
    public static TestNode Start(NodeOptions options, ILoggerFactory? loggers = null)
    {
        if (options.Port != 0 || options.Host != "127.0.0.1")
            throw new ArgumentException($"a test node listens on 127.0.0.1 port 0, not {options.Host}:{options.Port}", nameof(options));
        var node = new CacheNode(options, loggers);
        node.Start();
        return new TestNode(node);
    }

    public Task WaitForNoLeaksAsync(TimeSpan? timeout = null) =>
        Poll.UntilAsync(() => Stats is { Reservations: 0, ActiveLeases: 0 },
            () => $"no arena reservations or leases left on the node (now: {Stats.Reservations} reservations, {Stats.ActiveLeases} leases)",
            timeout ?? TimeSpan.FromSeconds(15));

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!Stopped) await WaitForNoLeaksAsync();
        }
        finally
        {
            await Node.StopAsync();
        }
    }
}
