namespace Kvasir.Tiers.Tests;

/// <summary>A fresh directory under the system temp path, deleted with everything in it on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kvasir-tiers-" + Guid.NewGuid().ToString("N")[..12]));

    public string Path { get; }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public static class Values
{
    /// <summary>Bytes that depend on the key and a version, so a stale or foreign value is always caught.</summary>
    public static byte[] For(string key, int size, int version = 0)
    {
        var v = new byte[size];
        uint x = (uint)(key.GetHashCode() ^ (version * 0x9E3779B9)) | 1;
        for (int i = 0; i < size; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; v[i] = (byte)x; }
        return v;
    }

    public static byte[] K(string key) => System.Text.Encoding.UTF8.GetBytes(key);
}
