using System.Security.Cryptography;
using Kvasir.Net;

namespace Kvasir.Server;

/// <summary>
/// Names and housekeeping of shared-memory arena files: <c>/dev/shm/kvasir-PID-RANDOM.arena</c> plus
/// <c>….arena.token</c> (16 random bytes, mode 0600, proving to a client that it mapped this node's arena) and
/// <c>….arena.lock</c> (held with flock for the node's life: what tells a live node from a dead one; the rule is
/// <see cref="ArenaFiles"/>'s, shared with the clients).
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

    /// <summary>
    /// Writes a random <see cref="Kvasir.Protocol.ArenaProof.SecretBytes"/>-byte secret into the arena file at
    /// <paramref name="capacity"/>, just past the bytes the node and its clients map: readable exactly by those who may
    /// open the arena file (mode 0600), which is what mapping it takes.
    /// </summary>
    public static byte[] WriteSecret(string arenaPath, long capacity)
    {
        var secret = RandomNumberGenerator.GetBytes(Kvasir.Protocol.ArenaProof.SecretBytes);
        using var f = new FileStream(arenaPath, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Write, Share = FileShare.ReadWrite });
        RandomAccess.Write(f.SafeFileHandle, secret, capacity);
        return secret;
    }

    public static void RemoveToken(string arenaPath)
    {
        try { File.Delete(arenaPath + ".token"); } catch (IOException) { }
    }

    /// <summary>
    /// Takes the liveness lock of a node's arena (<see cref="ArenaFiles.HoldLiveness"/>): <c>ARENA.lock</c>, appearing
    /// already under an exclusive <c>flock</c> held for the node's life, before the arena exists.
    /// </summary>
    public static FileStream HoldLiveness(string arenaPath) => ArenaFiles.HoldLiveness(arenaPath);

    /// <summary>Releases the liveness lock once the arena and its token are gone, removing the lock file first.</summary>
    public static void ReleaseLiveness(FileStream liveness, string arenaPath) => ArenaFiles.ReleaseLiveness(liveness, arenaPath);

    /// <summary>
    /// Deletes the arena files of nodes that are gone (killed with SIGKILL, crashed): an arena whose lock file
    /// nobody holds (<see cref="ArenaFiles.TryRemoveIfDead"/>, the rule clients apply too). A held lock means a live
    /// node, in this PID namespace or another, and its files are left alone. An arena with no lock file at all is left
    /// by a node of an older version, which took no lock: it is removed only when its process id is not visible here.
    /// </summary>
    public static void RemoveStale()
    {
        try
        {
            foreach (var lockPath in System.IO.Directory.EnumerateFiles(Directory, "kvasir-*.arena" + ArenaFiles.LockSuffix))
                ArenaFiles.TryRemoveIfDead(lockPath[..^ArenaFiles.LockSuffix.Length]);
            foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "kvasir-*.arena*"))
            {
                string arena = file.EndsWith(".token", StringComparison.Ordinal) ? file[..^".token".Length] : file;
                if (!arena.EndsWith(".arena", StringComparison.Ordinal) || File.Exists(arena + ".lock")) continue;
                var parts = Path.GetFileName(arena).Split('-');
                if (parts.Length >= 3 && int.TryParse(parts[1], out int pid) && pid != Environment.ProcessId && !System.IO.Directory.Exists($"/proc/{pid}"))
                    TryDelete(file);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }
}
