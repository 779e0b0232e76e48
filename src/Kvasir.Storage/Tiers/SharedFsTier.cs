using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Threading.Channels;
using Kvasir.Protocol;

namespace Kvasir.Storage.Tiers;

/// <summary>A value found in the shared tier: its file and what its header says.</summary>
/// <remarks><paramref name="ExpiresAt"/>: when the value expires (Unix ms, kept to the second); 0: never.</remarks>
internal sealed record SharedEntry(string Path, long Length, uint Crc32C, int KeyLength, long ExpiresAt = 0);

/// <summary>
/// The shared-filesystem cold tier: one file per key in a key-hashed tree
/// (<c>ROOT/kvasir-v1/ab/cd/&lt;sha256(key) hex&gt;.kv</c>) on a path many nodes mount. Every stored
/// value is also written here, in the background (a bounded queue: when it is full, the value is
/// simply not shared). Each file is written under a temporary name and renamed into place, so a
/// reader on any host sees a whole file or none. Files carry the key (hash collisions are told
/// apart) and the value's CRC-32C (checked on every read: a mismatch is a miss).
/// </summary>
/// <remarks>
/// Ordering with this node's own writes: writes are queued per key in order and done by one writer; a REMOVE
/// cancels the key's queued writes and deletes the file under the key's stripe lock, which the writer holds while
/// it writes, so a removed key never comes back from a write queued before the REMOVE. A key with a queued write
/// is not read from here (a miss): the file may still hold an older version. The blocking calls (locate, read,
/// exists, remove) are made on tier threads, never on a socket thread.
/// </remarks>
internal sealed class SharedFsTier : IDisposable
{
    /// <summary>"KVDR": the version-1 record header, which shared files keep (other nodes read them).</summary>
    internal const uint Magic = 0x5244564B;
    internal const int HeaderSize = 32;
    private const int Stripes = 256;

    private readonly string _root;
    private readonly object[] _stripes = Enumerable.Range(0, Stripes).Select(_ => new object()).ToArray();
    private readonly Lock _pendingGate = new();
    private readonly Dictionary<byte[], List<WriteJob>> _pendingByKey = new(Internal.ByteKeyComparer.Instance);
    private readonly Channel<WriteJob> _queue;
    private readonly Task _writer;
    private readonly long _maxPendingBytes;
    private readonly SharedFsUsage _usage;
    private long _pendingBytes, _pending;
    private long _hits, _misses, _writes, _writeErrors, _readErrors, _corrupt, _dropped, _replaced;
    private string? _lastError;
    private long _lastErrorTicks = long.MinValue;

    public SharedFsTier(string root, long maxPendingBytes = 256L << 20, TimeSpan? usageInterval = null)
    {
        _root = Path.Combine(Path.GetFullPath(root), "kvasir-v1");
        Directory.CreateDirectory(_root);
        _maxPendingBytes = maxPendingBytes;
        _usage = new SharedFsUsage(_root, usageInterval ?? TimeSpan.FromSeconds(30));
        _queue = Channel.CreateUnbounded<WriteJob>(new UnboundedChannelOptions { SingleReader = true });
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Null when healthy; else the last error of the last 10 s.</summary>
    public string? Degraded => Environment.TickCount64 - Interlocked.Read(ref _lastErrorTicks) < 10_000 ? _lastError : null;

    /// <summary>Values queued and not yet written.</summary>
    public long Pending => Interlocked.Read(ref _pending);

    internal string PathFor(ReadOnlySpan<byte> key)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(key, hash);
        var hex = Convert.ToHexStringLower(hash);
        return Path.Combine(_root, hex[..2], hex[2..4], hex + ".kv");
    }

    /// <summary>A value to write, or (<see cref="Removal"/>) the key's file to delete, in its place among the key's writes.</summary>
    private sealed class WriteJob(byte[] key, byte[] value, int length, uint crc, long expiresAt, bool removal = false)
    {
        public bool Removal { get; } = removal;
        public long ExpiresAt { get; } = expiresAt;
        public byte[] Key { get; } = key;
        public byte[] Value { get; } = value;
        public int Length { get; } = length;
        public uint Crc { get; } = crc;
        public bool Cancelled { get; set; }
    }

    /// <summary>
    /// Queues a copy of the value for writing; false (and counted as dropped) when the queue is full.
    /// <paramref name="expiresAtUnixMs"/> is when the value expires (Unix ms; the file keeps it rounded up to the second; 0: never).
    /// </summary>
    /// <remarks>
    /// A dropped value must not leave an older file standing in for it: the caller then calls <see cref="EnqueueRemoval"/>,
    /// under the same lock that orders its calls for the key.
    /// </remarks>
    public bool Enqueue(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, uint crc, long expiresAtUnixMs = 0)
    {
        if (Interlocked.Add(ref _pendingBytes, value.Length) > _maxPendingBytes)
        {
            Interlocked.Add(ref _pendingBytes, -value.Length);
            Interlocked.Increment(ref _dropped);
            return false;
        }
        var copy = ArrayPool<byte>.Shared.Rent(Math.Max(1, value.Length));
        value.CopyTo(copy);
        var job = new WriteJob(key.ToArray(), copy, value.Length, crc, expiresAtUnixMs);
        lock (_pendingGate)
        {
            if (!_pendingByKey.TryGetValue(job.Key, out var list)) _pendingByKey[job.Key] = list = [];
            list.Add(job);
        }
        Interlocked.Increment(ref _pending);
        _queue.Writer.TryWrite(job);
        return true;
    }

    /// <summary>
    /// Queues the deletion of the key's file behind its queued writes (which it cancels) and before any write queued
    /// after it; never refused (a removal holds no value bytes). For a value that could not be queued: the file it
    /// leaves standing is older than what this node serves. Until the writer has done it the key counts as pending (a
    /// miss here). Non-blocking. (Before, <see cref="Remove"/> on a tier thread: it could run after a newer value of the
    /// key was queued, and cancel that write or delete its file.)
    /// </summary>
    public void EnqueueRemoval(ReadOnlySpan<byte> key)
    {
        var job = new WriteJob(key.ToArray(), [], 0, 0, 0, removal: true);
        lock (_pendingGate)
        {
            if (_pendingByKey.TryGetValue(job.Key, out var list))
                foreach (var queued in list) queued.Cancelled = true;
            else _pendingByKey[job.Key] = list = [];
            list.Add(job);
        }
        Interlocked.Increment(ref _pending);
        _queue.Writer.TryWrite(job);
    }

    /// <summary>Whether a write of <paramref name="key"/> is queued (its file may be older than this node's value).</summary>
    public bool HasPending(ReadOnlySpan<byte> key)
    {
        lock (_pendingGate) return _pendingByKey.GetAlternateLookup<ReadOnlySpan<byte>>().ContainsKey(key);
    }

    private object StripeOf(ReadOnlySpan<byte> key) => _stripes[(uint)Internal.ByteKeyComparer.Instance.GetHashCode(key) % Stripes];

    private async Task WriteLoopAsync()
    {
        await foreach (var job in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try
            {
                lock (StripeOf(job.Key))
                {
                    if (job.Removal)
                    {
                        try { File.Delete(PathFor(job.Key)); }
                        catch (DirectoryNotFoundException) { }   // no file was ever written for the key
                    }
                    else if (!job.Cancelled)
                    {
                        Write(job.Key, job.Value.AsSpan(0, job.Length), job.Crc, job.ExpiresAt);
                        Interlocked.Increment(ref _writes);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Interlocked.Increment(ref _writeErrors);
                Fail($"write error: {ex.Message}");
            }
            finally
            {
                lock (_pendingGate)
                {
                    if (_pendingByKey.TryGetValue(job.Key, out var list))
                    {
                        list.Remove(job);
                        if (list.Count == 0) _pendingByKey.Remove(job.Key);
                    }
                }
                if (!job.Removal) ArrayPool<byte>.Shared.Return(job.Value);
                Interlocked.Add(ref _pendingBytes, -job.Length);
                Interlocked.Decrement(ref _pending);
            }
        }
    }

    private void Write(byte[] key, ReadOnlySpan<byte> value, uint crc, long expiresAt)
    {
        var path = PathFor(key);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        var header = new byte[HeaderSize + key.Length];
        WriteHeader(header, key, value.Length, crc, expiresAt);
        try
        {
            using (var handle = File.OpenHandle(temp, FileMode.CreateNew, FileAccess.Write))
            {
                RandomAccess.Write(handle, header, 0);
                RandomAccess.Write(handle, value, header.Length);
            }
            File.Move(temp, path, overwrite: true);   // atomic: readers see the old file or the new one
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>
    /// Finds the key's file and reads its header; false when absent, unreadable, or past its expiry (a miss, counted
    /// in <c>shared_misses</c> unless <paramref name="countMiss"/> is false: an EXISTS is not a read).
    /// </summary>
    public bool TryLocate(ReadOnlySpan<byte> key, out SharedEntry? entry, bool countMiss = true)
    {
        entry = null;
        var path = PathFor(key);
        Span<byte> header = stackalloc byte[HeaderSize + 512];
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            int got = RandomAccess.Read(handle, header[..(HeaderSize + key.Length)], 0);
            if (got != HeaderSize + key.Length
                || BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic
                || BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) != (uint)key.Length
                || !header.Slice(HeaderSize, key.Length).SequenceEqual(key)
                || BinaryPrimitives.ReadUInt32LittleEndian(header[24..]) != HeaderCrc(header[..HeaderSize], key))
            {
                Interlocked.Increment(ref _corrupt);
                Fail($"{Path.GetFileName(path)}: bad header");
                return false;
            }
            long length = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
            if (length < 0 || RandomAccess.GetLength(handle) != HeaderSize + key.Length + length)
            {
                Interlocked.Increment(ref _corrupt);
                Fail($"{Path.GetFileName(path)}: wrong length");
                return false;
            }
            long expiresAt = BinaryPrimitives.ReadUInt32LittleEndian(header[28..]) * 1000L;
            if (Expiry.Passed(expiresAt))
            {
                if (countMiss) Interlocked.Increment(ref _misses);
                return false;
            }
            entry = new SharedEntry(path, length, BinaryPrimitives.ReadUInt32LittleEndian(header[12..]), key.Length, expiresAt);
            return true;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            if (countMiss) Interlocked.Increment(ref _misses);
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _readErrors);
            Fail($"read error: {ex.Message}");
            return false;
        }
    }

    /// <summary>
    /// Reads a located value (exactly its length) and checks its CRC. False: a miss. A file replaced since it was located
    /// (another node renamed a newer value into place, or removed it) is a miss, not corruption: the file opened here is
    /// checked to be the one located (same length and value CRC in its header) before its bytes are read, and files are
    /// only ever replaced whole, so a CRC mismatch after that is damage to this file's own bytes.
    /// </summary>
    public bool TryRead(SharedEntry entry, Span<byte> destination)
    {
        try
        {
            using var handle = File.OpenHandle(entry.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            Span<byte> header = stackalloc byte[HeaderSize];
            if (RandomAccess.Read(handle, header, 0) != HeaderSize
                || BinaryPrimitives.ReadInt64LittleEndian(header[16..]) != entry.Length
                || BinaryPrimitives.ReadUInt32LittleEndian(header[12..]) != entry.Crc32C
                || RandomAccess.GetLength(handle) != HeaderSize + entry.KeyLength + entry.Length)
            {
                Interlocked.Increment(ref _replaced);
                Interlocked.Increment(ref _misses);
                return false;
            }
            int total = 0;
            while (total < destination.Length)
            {
                int n = RandomAccess.Read(handle, destination[total..], HeaderSize + entry.KeyLength + total);
                if (n == 0) break;
                total += n;
            }
            if (total != destination.Length || Crc32C.Compute(destination) != entry.Crc32C)
            {
                Interlocked.Increment(ref _corrupt);
                Fail($"{Path.GetFileName(entry.Path)}: CRC-32C mismatch or short file");
                return false;
            }
            Interlocked.Increment(ref _hits);
            return true;
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            Interlocked.Increment(ref _replaced);   // removed since it was located
            Interlocked.Increment(ref _misses);
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _readErrors);
            Fail($"read error: {ex.Message}");
            return false;
        }
    }

    /// <summary>
    /// Deletes the key's file and cancels its queued writes, so no write queued before this call can bring it back.
    /// Blocking (the stripe lock may wait for a write in progress): call it on a tier thread.
    /// </summary>
    public void Remove(ReadOnlySpan<byte> key)
    {
        lock (_pendingGate)
        {
            if (_pendingByKey.GetAlternateLookup<ReadOnlySpan<byte>>().TryGetValue(key, out var list))
                foreach (var job in list) job.Cancelled = true;
        }
        lock (StripeOf(key))
        {
            try { File.Delete(PathFor(key)); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { Fail($"remove: {ex.Message}"); }
        }
    }

    /// <summary>Whether the key has a file here. Blocking: call it on a tier thread.</summary>
    public bool Exists(ReadOnlySpan<byte> key) => File.Exists(PathFor(key));

    /// <summary>
    /// Header: magic, version 1, kind 1, key length, value CRC-32C, value length, header CRC, expiry (u32 Unix seconds,
    /// rounded up; 0: never). The header CRC covers bytes 0..23 and the key, and bytes 28..31 when the expiry is not
    /// 0, so files written before the expiry existed (zero there) keep their CRC.
    /// </summary>
    private static void WriteHeader(Span<byte> buffer, ReadOnlySpan<byte> key, long valueLength, uint crc, long expiresAtUnixMs)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[6..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[8..], (uint)key.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[12..], crc);
        BinaryPrimitives.WriteInt64LittleEndian(buffer[16..], valueLength);
        key.CopyTo(buffer[HeaderSize..]);
        long seconds = expiresAtUnixMs <= 0 ? 0 : Math.Min(uint.MaxValue, (expiresAtUnixMs + 999) / 1000);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[28..], (uint)seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[24..], HeaderCrc(buffer[..HeaderSize], key));
    }

    private static uint HeaderCrc(ReadOnlySpan<byte> header, ReadOnlySpan<byte> key)
    {
        uint state = Crc32C.Append(Crc32C.Append(Crc32C.InitialState, header[..24]), key);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header[28..]) != 0) state = Crc32C.Append(state, header[28..32]);
        return Crc32C.Complete(state);
    }

    /// <summary>Waits until every queued value is written (tests, clean shutdown), at most <paramref name="timeout"/>.</summary>
    public bool Drain(TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (Pending > 0 && Environment.TickCount64 < deadline) Thread.Sleep(5);
        return Pending == 0;
    }

    private void Fail(string reason)
    {
        _lastError = reason;
        Interlocked.Exchange(ref _lastErrorTicks, Environment.TickCount64);
    }

    /// <summary>Counters, by STATS name (prefix "shared_"): this node's reads and writes, and the tree's size as of the last walk.</summary>
    public IEnumerable<KeyValuePair<string, long>> Stats() =>
    [
        .. _usage.Stats(),
        new("shared_hits", Interlocked.Read(ref _hits)), new("shared_misses", Interlocked.Read(ref _misses)),
        new("shared_writes", Interlocked.Read(ref _writes)), new("shared_write_errors", Interlocked.Read(ref _writeErrors)),
        new("shared_read_errors", Interlocked.Read(ref _readErrors)), new("shared_corrupt", Interlocked.Read(ref _corrupt)),
        new("shared_pending", Pending), new("shared_dropped", Interlocked.Read(ref _dropped)),
        new("shared_replaced_reads", Interlocked.Read(ref _replaced)),
    ];

    public void Dispose()
    {
        Drain(TimeSpan.FromSeconds(10));
        _queue.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(10));
        _usage.Dispose();
    }
}
