namespace Kvasir.Transfer;

/// <summary>
/// One layer group of a <see cref="LayerPull"/>: <see cref="Length"/> bytes read into local region
/// <see cref="RegionId"/> at <see cref="Offset"/>, from <see cref="RemoteOffset"/> of the window that
/// <see cref="Advertisement"/> describes (one advertisement of the whole KV buffer serves every group).
/// </summary>
public readonly record struct LayerGroup(int RegionId, long Offset, long Length, ReadOnlyMemory<byte> Advertisement, long RemoteOffset = 0);

/// <summary>
/// The decoder's side of a per-layer pull (docs/transfer.md § Per-layer pull): one read per layer group, each started
/// when the prefill's layer-ready note for it arrives (<see cref="TransferEngine.NotifyLayerReadyAsync"/>), so the
/// decoder can run its first layers while the prefill still computes the last. <see cref="GroupLanded"/> completes
/// when a group is in local memory and throws a <see cref="TransferException"/> when it cannot be (its read failed,
/// the connection closed before it was announced, the prefill named a group past the list). Dispose forgets the pull:
/// notes that arrive later are ordinary notifications.
/// </summary>
public sealed class LayerPull : IDisposable
{
    private readonly IReadOnlyList<LayerGroup> _groups;
    private readonly TaskCompletionSource[] _landed;
    private readonly int[] _started;
    private readonly Func<LayerGroup, Task> _start;
    private readonly Action<LayerPull> _forget;

    internal LayerPull(int connId, ulong tag, IReadOnlyList<LayerGroup> groups, Func<LayerGroup, Task> start, Action<LayerPull> forget)
    {
        ConnId = connId;
        Tag = tag;
        _groups = [.. groups];
        _start = start;
        _forget = forget;
        _started = new int[_groups.Count];
        _landed = [.. _groups.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))];
        Completion = Task.WhenAll(_landed.Select(t => t.Task));
    }

    public int ConnId { get; }

    public ulong Tag { get; }

    public int Count => _groups.Count;

    /// <summary>Completes when every group landed; faults with the first group's failure.</summary>
    public Task Completion { get; }

    /// <summary>The groups in local memory so far, in index order.</summary>
    public IReadOnlyList<int> Landed => [.. Enumerable.Range(0, Count).Where(g => _landed[g].Task.IsCompletedSuccessfully)];

    /// <summary>Completes when group <paramref name="group"/> is in local memory.</summary>
    public Task GroupLanded(int group) => group >= 0 && group < Count
        ? _landed[group].Task
        : throw new TransferException(TransferError.InvalidArgument, $"layer group {group} is outside the pull's 0..{Count - 1}");

    public void Dispose() => _forget(this);

    /// <summary>A layer-ready note arrived (a lane's reader): starts that group's read, once.</summary>
    internal void Announce(uint group)
    {
        if (group >= (uint)Count)
        {
            FailUnstarted(new TransferException(TransferError.InvalidArgument,
                $"layer pull of tag {Tag} on connection {ConnId}: the producer announced layer group {group}, but the pull has {Count} groups"));
            return;
        }
        int g = (int)group;
        if (Interlocked.Exchange(ref _started[g], 1) != 0) return;
        Task read;
        try { read = _start(_groups[g]); }
        catch (TransferException e) { read = Task.FromException(e); }
        read.ContinueWith(t =>
        {
            if (t.IsCompletedSuccessfully) _landed[g].TrySetResult();
            else _landed[g].TrySetException(t.Exception?.InnerException ?? new TransferException(TransferError.ConnectionLost, $"layer group {g}: the read was cancelled"));
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>The connection closed: groups not announced yet can never land (those in flight fail by themselves).</summary>
    internal void ConnectionClosed(string reason) =>
        FailUnstarted(new TransferException(TransferError.ConnectionLost, $"layer pull of tag {Tag} on connection {ConnId}: {reason}"));

    private void FailUnstarted(TransferException error)
    {
        for (int g = 0; g < Count; g++)
        {
            if (Interlocked.Exchange(ref _started[g], 1) == 0) _landed[g].TrySetException(error);
        }
    }
}
