using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>A buffer registered with <c>RegisterKv</c>: its tag on the connection, its advertisement and the generation offered to the peer.</summary>
internal sealed class KvBuffer(int id, Session session, ulong tag, Region region, Advertisement advert)
{
    public int Id { get; } = id;
    public Session Session { get; } = session;
    public ulong Tag { get; } = tag;
    public Region Region { get; } = region;
    public Advertisement Advert { get; } = advert;

    /// <summary>The generation of the last KV_READY sent; a write of an older one is stale.</summary>
    public uint Generation { get; set; } = 1;

    /// <summary>Lengths of completed messages not yet taken by <c>RecvKv</c>.</summary>
    public Queue<long> Received { get; } = new();
}

/// <summary>
/// The two-sided (KVTrans) state of one connection: the next tag of this side, the peer's latest
/// KV_READY per tag with the generations already used, and this side's buffers by tag. Waits are
/// woken on any change and when the session closes.
/// </summary>
internal sealed class KvState(Session session)
{
    private readonly object _lock = new();
    private readonly Dictionary<ulong, KvReady> _peerReady = [];
    private readonly Dictionary<ulong, uint> _usedGeneration = [];
    private readonly Dictionary<ulong, KvBuffer> _local = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ulong _nextTag;

    public ulong NextTag() => Interlocked.Increment(ref _nextTag);

    public void AddLocal(KvBuffer buffer)
    {
        lock (_lock) _local[buffer.Tag] = buffer;
    }

    public void RemoveLocal(KvBuffer buffer)
    {
        lock (_lock) _local.Remove(buffer.Tag);
    }

    /// <summary>Moves a buffer on to its next generation (before telling the peer with KV_READY).</summary>
    public void NextGeneration(KvBuffer buffer)
    {
        lock (_lock) buffer.Generation++;
    }

    public void OnPeerReady(KvReady ready)
    {
        lock (_lock)
        {
            if (_peerReady.TryGetValue(ready.KvTag, out var old) && old.KvGeneration >= ready.KvGeneration) return;
            _peerReady[ready.KvTag] = ready;
        }
        Wake();
    }

    /// <summary>A write with a tag completed: queue it for <c>RecvKv</c> when it answers the advertisement and generation this side offered.</summary>
    public void Delivered(ulong tag, uint generation, ulong advertId, long length)
    {
        lock (_lock)
        {
            if (!_local.TryGetValue(tag, out var b) || b.Generation != generation || b.Advert.Id != advertId) return;
            b.Received.Enqueue(length);
        }
        Wake();
    }

    /// <summary>Waits for a KV_READY of <paramref name="tag"/> with a generation not used yet, and marks it used.</summary>
    public Task<KvReady> TakePeerReadyAsync(ulong tag, TimeSpan timeout) => WaitAsync(() =>
    {
        if (!_peerReady.TryGetValue(tag, out var r) || r.KvGeneration <= _usedGeneration.GetValueOrDefault(tag)) return (false, default);
        _usedGeneration[tag] = r.KvGeneration;
        return (true, r);
    }, timeout, $"the peer's KV_READY for tag {tag}");

    /// <summary>Waits for a completed message in <paramref name="buffer"/> and takes its length.</summary>
    public Task<long> TakeReceivedAsync(KvBuffer buffer, TimeSpan timeout) => WaitAsync(
        () => buffer.Received.TryDequeue(out long n) ? (true, n) : (false, 0L), timeout, $"a message for tag {buffer.Tag}");

    public void Wake()
    {
        TaskCompletionSource old;
        lock (_lock)
        {
            old = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        old.TrySetResult();
    }

    private async Task<T> WaitAsync<T>(Func<(bool Found, T Value)> take, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                var (found, value) = take();
                if (found) return value;
                changed = _changed.Task;
            }
            if (session.ClosedReason is { } reason)
                throw new TransferException(TransferError.ConnectionLost, $"connection {session.ConnId} closed while waiting for {what}: {reason}");
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
                throw new TransferException(TransferError.Timeout, $"no {what} on connection {session.ConnId} within {timeout.TotalSeconds:0.###} s");
            try { await changed.WaitAsync(left).ConfigureAwait(false); }
            catch (TimeoutException) { }
        }
    }
}
