using System.Buffers;

namespace Kvasir.Net;

/// <summary>
/// A <see cref="Memory{T}"/> view over native memory (arena space), so socket calls can read into
/// and write from the arena without a managed copy. The owner guarantees the memory outlives every
/// use of the view: for a reservation until Commit/Abort, for a lease until Release.
/// </summary>
public sealed unsafe class NativeMemoryManager(nint address, int length) : MemoryManager<byte>
{
    public override Span<byte> GetSpan() => new((void*)address, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new((byte*)address + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
