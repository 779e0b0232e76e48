namespace Kvasir.Storage.Tiers;

/// <summary>
/// Deadlines as the tiers below DRAM write them down: absolute wall-clock times (Unix milliseconds, UTC; 0 for no
/// expiry), so a deadline means the same after a restart or on another host. In memory the store keeps deadlines on
/// <see cref="Environment.TickCount64"/> (monotonic, but per boot); these convert between the two at the moment of
/// the call. A wall clock stepped between a write and a read moves the deadline with it.
/// </summary>
internal static class Expiry
{
    /// <summary>The wall-clock deadline (Unix ms) of a <see cref="Environment.TickCount64"/> deadline; 0 stays 0.</summary>
    public static long ToUnixMs(long tickDeadline)
        => tickDeadline == 0 ? 0 : Math.Max(1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + (tickDeadline - Environment.TickCount64));

    /// <summary>The wall-clock deadline (Unix ms) of a value that lives <paramref name="ttl"/> from now; 0 for none (null or zero).</summary>
    public static long FromTtl(TimeSpan? ttl)
        => ttl is { } t && t > TimeSpan.Zero ? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + (long)t.TotalMilliseconds : 0;

    /// <summary>Milliseconds left until <paramref name="unixMs"/>: 0 for no deadline, negative once it has passed (at least 1 ms counts as left).</summary>
    public static long Remaining(long unixMs)
    {
        if (unixMs == 0) return 0;
        long left = unixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        return left > 0 ? left : -1;
    }

    /// <summary>Whether a deadline (Unix ms, 0 for none) has passed.</summary>
    public static bool Passed(long unixMs) => unixMs != 0 && unixMs <= DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
