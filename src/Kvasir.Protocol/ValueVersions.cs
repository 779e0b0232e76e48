namespace Kvasir.Protocol;

/// <summary>
/// Value versions on the wire (docs/protocol.md § Value versions): a HELLO feature bit that, once granted, lets PUT
/// carry the <see cref="FrameFlags.Version"/> flag (a u64 version after each entry's key) and makes every GET reply
/// entry end with the value's version (u64). Versions order the copies of a key across replicas (docs/cluster.md).
/// </summary>
public static class ValueVersions
{
    /// <summary>The HELLO feature bit.</summary>
    public const ulong Feature = 0x4;

    /// <summary>Bytes a version adds to a PUT entry and to a GET reply entry.</summary>
    public const int Size = 8;

    /// <summary>
    /// The largest version a writer may choose: i63, so that it fits the node's signed clock. 0 means "no version: the
    /// node's clock assigns one".
    /// </summary>
    public const ulong Max = long.MaxValue;
}

/// <summary>
/// A hybrid logical clock for value versions: (Unix milliseconds &lt;&lt; 16) | a counter, always larger than every
/// version it handed out or was shown (<see cref="AtLeast"/>). Clients stamp PUTs with it and nodes version their
/// own writes with it, so versions from different hosts order by wall-clock time (as well as the hosts' clocks agree)
/// and never go backwards on one host. Thread-safe.
/// </summary>
public class HybridClock
{
    private long _last;

    /// <summary>The next version.</summary>
    public long Next()
    {
        long wall = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() << 16;
        while (true)
        {
            long seen = Volatile.Read(ref _last);
            long next = Math.Max(seen + 1, wall);
            if (Interlocked.CompareExchange(ref _last, next, seen) == seen) return next;
        }
    }

    /// <summary>Makes the next version larger than <paramref name="version"/> (one read back, recovered from disk, or chosen by a writer).</summary>
    public void AtLeast(long version)
    {
        long seen;
        while ((seen = Volatile.Read(ref _last)) < version && Interlocked.CompareExchange(ref _last, version, seen) != seen)
        {
        }
    }

    /// <summary><paramref name="requested"/> when it is a version (above 0; the clock then stays ahead of it), else <see cref="Next"/>.</summary>
    public long Take(long requested)
    {
        if (requested <= 0) return Next();
        AtLeast(requested);
        return requested;
    }
}
