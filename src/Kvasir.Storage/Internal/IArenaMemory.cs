namespace Kvasir.Storage.Internal;

/// <summary>
/// The bytes an arena is carved from. Implementations: process-private native memory today, a /dev/shm file
/// mapping later (so local clients can map the same bytes). Nothing is ever stored in-band: all bookkeeping
/// lives in managed memory, so a client mapping the arena sees only payload bytes.
/// </summary>
internal interface IArenaMemory : IDisposable
{
    /// <summary>Start of the arena; 4096-byte aligned. Invalid after Dispose.</summary>
    nint BaseAddress { get; }

    /// <summary>Usable length in bytes.</summary>
    long Length { get; }
}
