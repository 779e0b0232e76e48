using System.IO.MemoryMappedFiles;

namespace Kvasir.Storage.Internal;

/// <summary>
/// Arena in a shared-memory file (normally under /dev/shm), mode 0600, mapped shared: same-host
/// clients with permission to open the file map the same bytes (the shared-memory transport). The
/// file is removed on Dispose.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
internal sealed unsafe class ShmArenaMemory : IArenaMemory
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;

    public ShmArenaMemory(string path, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Path = path;
        var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.ReadWrite,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        try
        {
            stream.SetLength(length);
            _file = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
            _base += _view.PointerOffset;
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
        Length = length;
    }

    public string Path { get; }

    public nint BaseAddress => (nint)_base;

    public long Length { get; }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        try { File.Delete(Path); } catch (IOException) { }
    }
}
