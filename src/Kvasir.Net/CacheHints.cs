using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Kvasir.Net;

/// <summary>
/// Software prefetch behind a safe signature, for code that may not hold <c>unsafe</c> blocks (Kvasir.Prefix): the
/// caller names an element by reference (so its index is bounds-checked where it is taken), and the CPU is asked to
/// bring that element's cache line towards the core. A prefetch is only a hint: it never faults and changes nothing, so a
/// reference to an array the GC moves before the instruction runs only wastes the hint. Unlike a plain load, it does not
/// hold the core's reorder window while the line is on its way, so it can be issued well ahead of the work that reads it.
/// </summary>
public static class CacheHints
{
    /// <summary>Whether <see cref="Prefetch{T}"/> issues an instruction on this CPU (x86 with SSE); elsewhere it does nothing.</summary>
    public static bool IsSupported => Sse.IsSupported;

    /// <summary>Asks for the cache line holding <paramref name="location"/>, into every cache level.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Prefetch<T>(ref T location)
    {
        if (Sse.IsSupported) Sse.Prefetch0(Unsafe.AsPointer(ref location));
    }
}
