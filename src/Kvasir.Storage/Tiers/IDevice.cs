using Microsoft.Win32.SafeHandles;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// One file of a tier, addressed by offset (Tsavorite's IDevice is the model): positional reads and
/// writes, no shared file pointer, so many writers may write disjoint ranges at once. Every failure
/// is an <see cref="IOException"/>; callers turn it into a miss and a degraded tier, never a crash.
/// </summary>
public interface IDevice : IDisposable
{
    string Name { get; }

    /// <summary>Bytes in the file now.</summary>
    long Length { get; }

    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Reads up to <paramref name="destination"/>.Length bytes; fewer only at the end of the file.</summary>
    int Read(long offset, Span<byte> destination);

    /// <summary>Forces written bytes to stable storage (fsync).</summary>
    void Flush();
}

/// <summary>Creates, lists and deletes the devices (files) of one directory.</summary>
public interface IDeviceFactory
{
    /// <summary>Opens <paramref name="name"/>, creating it if absent.</summary>
    IDevice Open(string name);

    void Delete(string name);

    /// <summary>Names of the existing devices, in ordinal order.</summary>
    IReadOnlyList<string> List();
}

/// <summary>Plain files in a directory, through .NET's RandomAccess APIs (pread/pwrite).</summary>
public sealed class FileDeviceFactory : IDeviceFactory
{
    private readonly string _directory;

    public FileDeviceFactory(string directory)
    {
        _directory = Path.GetFullPath(directory);
        Directory.CreateDirectory(_directory);
    }

    public IDevice Open(string name) => new FileDevice(Path.Combine(_directory, name));

    public void Delete(string name) => File.Delete(Path.Combine(_directory, name));

    public IReadOnlyList<string> List()
        => Directory.EnumerateFiles(_directory).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
}

internal sealed class FileDevice : IDevice
{
    private readonly SafeFileHandle _handle;

    public FileDevice(string path)
    {
        Name = Path.GetFileName(path);
        _handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
    }

    public string Name { get; }

    public long Length => RandomAccess.GetLength(_handle);

    public void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_handle, data, offset);

    public int Read(long offset, Span<byte> destination)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[total..], offset + total);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    public void Flush() => RandomAccess.FlushToDisk(_handle);

    public void Dispose() => _handle.Dispose();
}
