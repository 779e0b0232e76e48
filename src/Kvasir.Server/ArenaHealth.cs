using System.Diagnostics;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server;

/// <summary>
/// Health of the DRAM arena, as /v1/health reports it. The arena is degraded while writes are being
/// refused with OutOfMemory — nothing left to evict because pinned, leased or reserved values fill it —
/// and for <see cref="Window"/> after the last refusal. Recording happens only on that refusal path,
/// so a healthy data path pays nothing.
/// </summary>
public sealed class ArenaHealth
{
    /// <summary>How long after the last refused write the arena still counts as degraded.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private long _lastRefusal;   // Stopwatch timestamp; 0 = never
    private long _refusals;

    /// <summary>Writes refused for lack of memory since the node started.</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>Called with every write's reservation status; only OutOfMemory is recorded.</summary>
    public void Note(WireStatus status)
    {
        if (status != WireStatus.OutOfMemory) return;
        Interlocked.Increment(ref _refusals);
        Volatile.Write(ref _lastRefusal, Stopwatch.GetTimestamp());
    }

    /// <summary>The reason the arena is degraded now, or null when it is healthy.</summary>
    public string? Problem()
    {
        long last = Volatile.Read(ref _lastRefusal);
        if (last == 0) return null;
        var ago = Stopwatch.GetElapsedTime(last);
        if (ago > Window) return null;
        return $"writes refused for lack of memory ({Refusals} since start, the last {ago.TotalSeconds:0.0} s ago): pinned, leased or reserved values fill the arena";
    }
}
