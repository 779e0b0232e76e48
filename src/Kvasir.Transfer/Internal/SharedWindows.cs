using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Kvasir.Transfer.Internal;

/// <summary>
/// The initiator's mappings of same-host targets' shared files (docs/transfer.md § Same host shared memory),
/// by path. A target names its files by engine id, process and serial, so a path never names two different
/// files and a mapping is reused for every advertisement of that file. Only files under /dev/shm are opened.
/// </summary>
internal sealed unsafe partial class SharedWindows : IDisposable
{
    private const string ShmDir = "/dev/shm/";
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Mapping> _maps = new(StringComparer.Ordinal);
    private readonly List<Mapping> _retired = [];   // replaced by a longer mapping; may still be in use until Dispose
    private readonly ReaderWriterLockSlim _use = new(LockRecursionPolicy.NoRecursion);
    private bool _disposed;

    /// <summary>
    /// Copies <paramref name="length"/> bytes between <paramref name="local"/> and [offset, offset+length) of the
    /// file (into the file when <paramref name="toFile"/>); false when the file cannot be mapped (the caller uses
    /// the lanes). The copy runs under the read side of a lock that Dispose takes to unmap, so it never touches an
    /// unmapped page.
    /// </summary>
    public bool TryCopy(string path, ulong offset, long length, nint local, bool toFile)
    {
        if (!path.StartsWith(ShmDir, StringComparison.Ordinal) || path.Contains("/../", StringComparison.Ordinal)) return false;
        long fileLength;
        try { fileLength = new FileInfo(path).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
        if (offset > (ulong)fileLength || (ulong)length > (ulong)fileLength - offset) return false;
        _use.EnterReadLock();
        try
        {
            if (_disposed || Map(path, fileLength) is not { } map) return false;
            nint window = map.Base + (nint)offset;
            if (toFile) Buffer.MemoryCopy((void*)local, (void*)window, length, length);
            else Buffer.MemoryCopy((void*)window, (void*)local, length, length);
            return true;
        }
        finally { _use.ExitReadLock(); }
    }

    private Mapping? Map(string path, long fileLength)
    {
        lock (_gate)
        {
            if (!_maps.TryGetValue(path, out var map) || map.Length < fileLength)
            {
                var fresh = Mapping.Open(path, fileLength);
                if (fresh is null) return null;
                if (map is not null) _retired.Add(map);
                _maps[path] = map = fresh;
            }
            return map;
        }
    }

    public void Dispose()
    {
        _use.EnterWriteLock();
        try
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var m in _maps.Values.Concat(_retired)) m.Dispose();
            _maps.Clear();
            _retired.Clear();
        }
        finally { _use.ExitWriteLock(); }
    }

    private sealed partial class Mapping : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;

        private Mapping(MemoryMappedFile file, MemoryMappedViewAccessor view, long length)
        {
            _file = file;
            _view = view;
            Length = length;
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            Base = (nint)(p + view.PointerOffset);
        }

        public nint Base { get; }

        public long Length { get; }

        private const int OReadWrite = 2, OCloexec = 0x80000;   // Linux

        [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        private static partial int OpenReadWrite(string path, int flags);

        public static Mapping? Open(string path, long length)
        {
            try
            {
                // Opened with open(2) itself, not File.Open: .NET takes a shared flock on a file it opens for writing,
                // and a target holds an exclusive flock on its file for as long as it lives (the liveness rule of
                // python/kvasir/transfer/_shm.py), so File.Open failed and every same-host transfer fell back to the lanes.
                int fd = OpenReadWrite(path, OReadWrite | OCloexec);
                if (fd < 0) return null;
                var handle = new SafeFileHandle(fd, ownsHandle: true);
                MemoryMappedFile file;
                try { file = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false); }
                catch { handle.Dispose(); throw; }
                try { return new Mapping(file, file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite), length); }
                catch { file.Dispose(); throw; }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }
}
