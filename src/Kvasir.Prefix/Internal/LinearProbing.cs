namespace Kvasir.Prefix.Internal;

/// <summary>The one rule of deleting from a linear-probing table without tombstones (shifting the probe run back).</summary>
internal static class LinearProbing
{
    /// <summary>
    /// Whether the entry in bucket <paramref name="next"/>, whose home bucket is <paramref name="home"/>, must stay
    /// where it is when bucket <paramref name="hole"/> (before it in the run) is emptied: moved into the hole it would
    /// no longer be found, since its home lies in (hole, next].
    /// </summary>
    public static bool MustStay(int hole, int next, int home) => hole <= next ? home > hole && home <= next : home > hole || home <= next;
}
