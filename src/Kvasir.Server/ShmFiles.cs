using System.Security.Cryptography;

namespace Kvasir.Server;

/// <summary>
/// Names and housekeeping of shared-memory arena files: <c>/dev/shm/kvasir-PID-RANDOM.arena</c> plus
/// <c>….arena.token</c> (16 random bytes, mode 0600, proving to a client that it mapped this node's arena).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public static class ShmFiles
{
    public const string Directory = "/dev/shm";

    public static string NewPath() => Path.Combine(Directory, $"kvasir-{Environment.ProcessId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}.arena");

    /// <summary>Whether a /dev/shm arena of <paramref name="capacity"/> bytes fits (with 5% to spare).</summary>
    public static bool Fits(long capacity)
    {
        try { return System.IO.Directory.Exists(Directory) && new DriveInfo(Directory).AvailableFreeSpace >= capacity + capacity / 20; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException) { return false; }
    }

    public static byte[] WriteToken(string arenaPath)
    {
        var token = RandomNumberGenerator.GetBytes(Kvasir.Protocol.ShmInfoReply.TokenBytes);
        using var f = new FileStream(arenaPath + ".token", new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        f.Write(token);
        return token;
    }

    public static void RemoveToken(string arenaPath)
    {
        try { File.Delete(arenaPath + ".token"); } catch (IOException) { }
    }

    /// <summary>Deletes arena files whose node process is gone (killed with SIGKILL).</summary>
    public static void RemoveStale()
    {
        try
        {
            foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "kvasir-*.arena*"))
            {
                var parts = Path.GetFileName(file).Split('-');
                if (parts.Length >= 3 && int.TryParse(parts[1], out int pid) && pid != Environment.ProcessId && !System.IO.Directory.Exists($"/proc/{pid}"))
                    File.Delete(file);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }
}
