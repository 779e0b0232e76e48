namespace Kvasir.Client.Internal;

/// <summary>
/// One cluster member as a router sees it: a single-node <see cref="KvStore"/> opened on first use
/// and kept. After a failed connect (or a batch the node could not answer at all) the slot is "down"
/// for a short backoff (0.25 s doubling to 4 s), during which its keys fail over to replicas at once
/// instead of each paying a connect attempt.
/// </summary>
internal sealed class NodeSlot : IAsyncDisposable
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(250), MaxBackoff = TimeSpan.FromSeconds(4);

    private readonly SemaphoreSlim _connect = new(1, 1);
    private readonly bool _inProcess;
    private KvStore? _store;
    private long _downUntil;
    private TimeSpan _backoff = MinBackoff;
    private int _disposed;

    private string? _lastError;

    /// <summary>A remote member; <paramref name="tls"/>: its registry record says its data port speaks TLS.</summary>
    public NodeSlot(string id, string address, bool tls = false) { Id = id; Address = address; Tls = tls; }

    /// <summary>A slot for a node inside this process: always connected, never down; disposing the slot disposes the store and so the node.</summary>
    public NodeSlot(string id, string address, KvStore inProcess) : this(id, address)
    {
        _store = inProcess;
        _inProcess = true;
    }

    public string Id { get; }
    public string Address { get; }

    /// <summary>The node advertised TLS in its registry record.</summary>
    public bool Tls { get; }

    /// <summary>Why the last connect failed, once: the caller logs it; null when there is nothing new.</summary>
    public string? TakeError() => Interlocked.Exchange(ref _lastError, null);
    public KvStore? Store => Volatile.Read(ref _store);

    /// <summary>The node's store, or null while it is down (unless <paramref name="force"/>: a last try, backoff or not) or cannot be reached.</summary>
    public async ValueTask<KvStore?> GetStoreAsync(KvStoreOptions options, CancellationToken ct, bool force = false)
    {
        if (!force && !_inProcess && Environment.TickCount64 < Volatile.Read(ref _downUntil)) return null;
        // Once open, the store's own pool replaces broken connections on use.
        if (Volatile.Read(ref _store) is { } ready) return ready;
        await _connect.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_store is not null) return _store;
            if ((!force && Environment.TickCount64 < _downUntil) || _disposed != 0) return null;
            try
            {
                if (Tls && options.Tls is null)
                    throw new KvasirException($"node {Id} ({Address}) requires TLS (its registry record says tls): set KvStoreOptions.Tls (CLI --tls-ca, Python tls_ca)");
                var store = await KvStore.ConnectAsync(options.ForNode(Address), ct).ConfigureAwait(false);
                if (_disposed != 0) { await store.DisposeAsync().ConfigureAwait(false); return null; }
                Volatile.Write(ref _store, store);
                return store;
            }
            catch (KvasirException ex) when (!ct.IsCancellationRequested)
            {
                Volatile.Write(ref _lastError, ex.Message);
                MarkDown();
                return null;
            }
        }
        finally
        {
            _connect.Release();
        }
    }

    /// <summary>The node failed within its backoff: requests skip it (an in-process node never is).</summary>
    public bool IsDown => !_inProcess && Environment.TickCount64 < Volatile.Read(ref _downUntil);

    /// <summary>The node answered: the next failure starts from the shortest backoff again.</summary>
    public void MarkUp() => _backoff = MinBackoff;

    /// <summary>Skips the node for the current backoff; true when it was not already down.</summary>
    public bool MarkDown()
    {
        if (_inProcess) return false;
        bool wasUp = Environment.TickCount64 >= Volatile.Read(ref _downUntil);
        Volatile.Write(ref _downUntil, Environment.TickCount64 + (long)_backoff.TotalMilliseconds);
        if (wasUp) _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, MaxBackoff.Ticks));
        return wasUp;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _connect.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_store is not null) await _store.DisposeAsync().ConfigureAwait(false);
            _store = null;
        }
        finally
        {
            _connect.Release();
        }
    }
}
