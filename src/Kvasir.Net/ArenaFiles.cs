using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;

namespace Kvasir.Net;

/// <summary>What <see cref="ArenaFiles.TryRemoveIfDead"/> found.</summary>
public enum ArenaOwner
{
    /// <summary>
    /// The arena's lock is held: its node lives (a stopped or slow node too), or the lock could not be probed. Nothing
    /// was touched; a client keeps its mapping. (For the few microseconds another prober holds the lock of a dead node
    /// while it removes the files, the arena looks live too: the caller's next probe finds it gone.)
    /// </summary>
    Live,

    /// <summary>The lock was free: the node is dead, and this call removed its arena, token and lock files.</summary>
    Removed,

    /// <summary>
    /// No lock file, or not the one this call opened: the files were removed already (the node's clean stop, another
    /// prober) or belong to a node of a version before the lock, whose liveness this rule cannot tell. Nothing was removed.
    /// </summary>
    Absent,
}

/// <summary>
/// The one liveness rule of a node's shared-memory arena files (<c>ARENA</c>, <c>ARENA.token</c>, <c>ARENA.lock</c>, named
/// by the node: docs/operations.md § Shared-memory arena files): who may remove them, and when. The node holds the
/// lock for its life (<see cref="HoldLiveness"/>); a starting node's sweep and a client that lets go of a node's arena
/// call <see cref="TryRemoveIfDead"/>. The Python client's twin, same rule: python/kvasir/arena_files.py.
/// </summary>
/// <remarks>
/// <para>
/// The lock is an exclusive BSD <c>flock(2)</c> on <c>ARENA.lock</c>, held by the node from before its arena exists until
/// after its files are gone. The kernel drops it when the process dies, however it dies (SIGKILL, the OOM killer); a
/// stopped or slow process keeps it. It is a lock on the file, not on a process id, so a process in another PID
/// namespace sharing /dev/shm sees it. flock locks are what .NET's FileShare takes on Unix and what Python's
/// <c>fcntl.flock</c> takes, so the .NET and Python clients see the same lock; POSIX record locks (<c>fcntl(F_SETLK)</c>,
/// Python's <c>fcntl.lockf</c>) are a separate table on Linux that does not see flock locks, so neither side uses them.
/// This class calls flock itself rather than rely on FileShare: the runtime switch System.IO.DisableFileLocking
/// (DOTNET_SYSTEM_IO_DISABLEFILELOCKING=1) turns FileShare's locks off, and a node run with it would hold no lock (every
/// prober would take it for dead), a client run with it would probe none (and take every node for dead).
/// </para>
/// <para>
/// Birth: the lock file never exists unlocked. <see cref="HoldLiveness"/> creates it under a temporary name, locks it, and
/// only then gives it its name (<see cref="File.Move(string, string)"/>: link(2) or rename(2), atomic, never replacing a
/// file). A prober that finds <c>ARENA.lock</c> unlocked has therefore found a dead node's, never one a node is starting
/// with; before, a sweep could take the lock in the instant between the file's creation and its lock, and remove it
/// from under the starting node.
/// </para>
/// <para>
/// Death: whoever takes the free lock (exclusive, non-blocking) and finds the file it locked still at <c>ARENA.lock</c>
/// removes <c>ARENA</c>, <c>ARENA.token</c> and then <c>ARENA.lock</c>, holding the lock throughout. Everyone who unlinks
/// <c>ARENA.lock</c> holds its lock while doing so (the node at a clean stop, a prober), so while a prober holds the lock
/// on the file at that name nobody else removes these files, and no node can start under the same name (its link fails
/// while the name exists). A prober whose file was unlinked since it opened it (another prober won) touches nothing.
/// The arena goes first and the lock last, so an arena is never seen without its lock file.
/// </para>
/// <para>
/// Removing the file frees nothing while a process maps it (tmpfs pages go with the last mapping): clients must also
/// let go of their mappings, which is why a client probes after its node fails and unmaps unless the lock is held.
/// </para>
/// </remarks>
[SupportedOSPlatform("linux")]
public static partial class ArenaFiles
{
    public const string TokenSuffix = ".token";
    public const string LockSuffix = ".lock";

    private const int LockEx = 2, LockNb = 4;

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(SafeFileHandle fd, int operation);

    /// <summary>
    /// Creates <c>ARENA.lock</c> (mode 0600) already holding its exclusive flock, before the arena exists; keep the stream
    /// for the node's life and end it with <see cref="ReleaseLiveness"/>. Throws <see cref="IOException"/> when the name
    /// exists (another node's) or the lock cannot be taken.
    /// </summary>
    public static FileStream HoldLiveness(string arenaPath)
    {
        string lockPath = arenaPath + LockSuffix;
        string pending = $"{lockPath}.{Environment.ProcessId}.new";   // matches no pattern a sweep looks for
        var stream = new FileStream(pending, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        try
        {
            if (Flock(stream.SafeFileHandle, LockEx | LockNb) != 0)
                throw new IOException($"cannot lock {pending}: errno {Marshal.GetLastPInvokeError()}");
            File.Move(pending, lockPath);   // the name appears locked; throws if it exists
            return stream;
        }
        catch
        {
            stream.Dispose();
            TryDelete(pending);
            throw;
        }
    }

    /// <summary>
    /// Ends <see cref="HoldLiveness"/> once the arena and its token are gone: removes <c>ARENA.lock</c> while still holding
    /// its lock (a prober that opened it meanwhile then finds it unlinked and touches nothing), then drops the lock.
    /// </summary>
    public static void ReleaseLiveness(FileStream liveness, string arenaPath)
    {
        TryDelete(arenaPath + LockSuffix);
        liveness.Dispose();
    }

    /// <summary>
    /// Removes a node's arena files when the node is dead: its lock file exists and nobody holds its lock. Never blocks
    /// (a held lock answers <see cref="ArenaOwner.Live"/> at once) and never throws for files it cannot open or remove.
    /// </summary>
    public static ArenaOwner TryRemoveIfDead(string arenaPath)
    {
        string lockPath = arenaPath + LockSuffix;
        SafeFileHandle handle;
        try
        {
            // FileShare.None: .NET takes the exclusive flock here already (failing at once against a live node's: an
            // IOException), unless file locking is switched off; the flock below takes it then. Not ReadWrite: the shared
            // flock .NET would take for it must be converted to an exclusive one, and two probers converting at once
            // could each fail against the other's shared lock.
            handle = File.OpenHandle(lockPath, FileMode.Open, FileAccess.Read, FileShare.None);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException) { return ArenaOwner.Absent; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return ArenaOwner.Live; }
        using (handle)
        {
            if (Flock(handle, LockEx | LockNb) != 0) return ArenaOwner.Live;
            if (!StillNamed(handle, lockPath)) return ArenaOwner.Absent;
            TryDelete(arenaPath);
            TryDelete(arenaPath + TokenSuffix);
            TryDelete(lockPath);
            return ArenaOwner.Removed;
        }
    }

    /// <summary>
    /// Whether the file open as <paramref name="handle"/> still has its name <paramref name="path"/>: /proc/self/fd names
    /// an unlinked file "PATH (deleted)" (and a lock file has no other name once linked; the directory may be reached
    /// through a symbolic link, so the names are not compared). Without /proc, whether the name exists at all.
    /// </summary>
    private static bool StillNamed(SafeFileHandle handle, string path)
    {
        try
        {
            string? target = new FileInfo($"/proc/self/fd/{handle.DangerousGetHandle()}").LinkTarget;
            if (target is not null) return !target.EndsWith(" (deleted)", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return File.Exists(path);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }
}
