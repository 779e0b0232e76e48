using System.Buffers;
using System.Collections.Concurrent;
using Kvasir.Protocol;

namespace Kvasir.Storage.Tiers;

/// <summary>
/// The disk tier's write queue: one thread lays records down in the order they were queued (taking their versions
/// as it places them), so the socket that received a value is free to receive the next one while this one is
/// written. Each record is the data (header, key, value from the caller's memory) then its index entry; a batch of
/// queued records is written back to back, synced once when <see cref="DiskSyncMode.Batch"/> asks for it, and only
/// then indexed and completed. Segment rotation and drops happen here too, off every socket thread.
/// </summary>
internal sealed class DiskWriter : IDisposable
{
    private const int MaxBatch = 256;

    private readonly DiskTier _tier;
    private readonly BlockingCollection<Job> _queue = new(new ConcurrentQueue<Job>());
    private readonly Thread _thread;
    private long _queued;

    public DiskWriter(DiskTier tier)
    {
        _tier = tier;
        _thread = new Thread(Run) { IsBackground = true, Name = "kvasir disk writer" };
        _thread.Start();
    }

    /// <summary>Records queued and not yet completed.</summary>
    public long Queued => Interlocked.Read(ref _queued);

    private sealed class Job(byte[] key, nint value, long length, uint crc, ushort kind, long requested, long expiresAt)
    {
        public long ExpiresAt { get; } = expiresAt;
        public long Requested { get; } = requested;
        public byte[] Key { get; } = key;
        public nint Value { get; } = value;
        public long Length { get; } = length;
        public uint Crc { get; } = crc;
        public ushort Kind { get; } = kind;
        public TaskCompletionSource<DiskWrite> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public DiskSegment? Segment { get; set; }
        public long Offset { get; set; }
        public long IndexOffset { get; set; } = -1;
        public long Version { get; set; }
        public string? Error { get; set; }

        /// <summary>Not written: a record of the key at least as new was already laid down (see <see cref="Superseded"/>).</summary>
        public bool Skipped { get; set; }
    }

    public Task<DiskWrite> Enqueue(byte[] key, nint value, long length, uint crc, ushort kind, long version = 0, long expiresAt = 0)
    {
        var job = new Job(key, value, length, crc, kind, version, expiresAt);
        Interlocked.Increment(ref _queued);
        try
        {
            _queue.Add(job);
        }
        catch (InvalidOperationException)
        {
            Interlocked.Decrement(ref _queued);
            job.Done.TrySetResult(new DiskWrite(false, 0, "the disk tier is closed"));
        }
        return job.Done.Task;
    }

    private void Run()
    {
        var batch = new List<Job>(MaxBatch);
        var drops = new List<DiskSegment>();
        var touched = new HashSet<DiskSegment>();
        var placed = new Dictionary<byte[], long>(Internal.ByteKeyComparer.Instance);
        foreach (var first in _queue.GetConsumingEnumerable())
        {
            batch.Add(first);
            while (batch.Count < MaxBatch && _queue.TryTake(out var more)) batch.Add(more);
            foreach (var job in batch)
            {
                try
                {
                    if (Superseded(job, placed)) continue;
                    Execute(job, drops, touched);
                    if (job.Error is null && job.Segment is not null)
                        placed[job.Key] = Math.Max(job.Version, placed.GetValueOrDefault(job.Key));
                }
                catch (Exception ex)
                {
                    // Nothing a record meets may take the writer thread (and so the node) down: the record fails, the
                    // reason goes to the node's health, and the next record is tried.
                    job.Error ??= $"disk writer: {ex.GetType().Name}: {ex.Message}";
                    _tier.WriteFailed(ex, "disk writer");
                }
            }
            if (_tier.Sync == DiskSyncMode.Batch && touched.Count > 0) SyncTouched(batch, touched);
            foreach (var job in batch) Finish(job);
            batch.Clear();
            touched.Clear();
            placed.Clear();
        }
    }

    /// <summary>
    /// A value whose version the writer chose and that is not newer than a record of its key already laid down (indexed,
    /// or placed earlier in this batch) is not written at all: it is superseded, and a record of it on disk would come
    /// back at recovery once the newer record's segment is dropped for capacity (recovery sees only what is left).
    /// </summary>
    private bool Superseded(Job job, Dictionary<byte[], long> placed)
    {
        if (job.Requested <= 0 || job.Kind != DiskRecord.KindValue) return false;
        long newest = Math.Max(_tier.NewestVersion(job.Key), placed.GetValueOrDefault(job.Key));
        if (newest < job.Requested) return false;
        job.Skipped = true;
        job.Version = job.Requested;
        return true;
    }

    private void Execute(Job job, List<DiskSegment> drops, HashSet<DiskSegment> touched)
    {
        long recordBytes = DiskRecord.RecordBytes(job.Key.Length, job.Length);
        if (recordBytes > _tier.SegmentBytes)
        {
            job.Error = $"a value of {job.Length} bytes does not fit a disk segment of {_tier.SegmentBytes} bytes (raise --disk-capacity)";
            return;
        }
        DiskSegment? opened = null;
        try
        {
            if (_tier.NeedsNewSegment(recordBytes)) opened = _tier.OpenNext();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            job.Error = $"cannot open a segment: {ex.Message}";
            _tier.WriteFailed(ex, "segment");
            return;
        }
        var (segment, offset, indexOffset, version) = _tier.Place(recordBytes, drops, opened, job.Requested);
        segment.TryAcquire();   // the segment is live here (just placed), so this cannot fail
        job.Segment = segment;
        job.Offset = offset;
        job.Version = version;
        foreach (var dropped in drops) _tier.Drop(dropped);
        drops.Clear();

        var info = new RecordInfo(job.Kind, job.Crc, job.Length, version, offset, segment.Id);
        byte[] header = ArrayPool<byte>.Shared.Rent(DiskRecord.HeaderSize + job.Key.Length);
        try
        {
            int headerLength = DiskRecord.WriteHeader(header, info, job.Key);
            segment.Data.Write(offset, header.AsSpan(0, headerLength));
            WriteValue(segment.Data, offset + headerLength, job.Value, job.Length);
            Span<byte> entry = stackalloc byte[DiskRecord.IndexEntrySize];
            DiskRecord.WriteIndexEntry(entry, info, job.Key.Length, Crc32C.Compute(job.Key), job.ExpiresAt);
            segment.Index.Write(indexOffset, entry);
            job.IndexOffset = indexOffset;
            if (_tier.Sync == DiskSyncMode.Always)
            {
                segment.Data.Flush();
                segment.Index.Flush();
                _tier.Synced();
            }
            touched.Add(segment);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            job.Error = $"{segment.Data.Name}: write error: {ex.Message}";
            _tier.WriteFailed(ex, segment.Data.Name);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
    }

    private static unsafe void WriteValue(IDevice device, long at, nint value, long length)
    {
        const int Chunk = 1 << 30;
        for (long done = 0; done < length; done += Chunk)
        {
            int n = (int)Math.Min(Chunk, length - done);
            device.Write(at + done, new ReadOnlySpan<byte>((byte*)value + done, n));
        }
    }

    /// <summary>Group commit: one fsync per touched segment; a failed sync fails every record written to that segment.</summary>
    private void SyncTouched(List<Job> batch, HashSet<DiskSegment> touched)
    {
        foreach (var segment in touched)
        {
            try
            {
                segment.Data.Flush();
                segment.Index.Flush();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                _tier.WriteFailed(ex, segment.Data.Name);
                foreach (var job in batch)
                    if (job.Segment == segment && job.Error is null) job.Error = $"{segment.Data.Name}: sync failed: {ex.Message}";
            }
        }
        _tier.Synced();
    }

    private void Finish(Job job)
    {
        if (job.Error is not null && job.IndexOffset >= 0) Unwrite(job);
        // A skipped write is Ok only while the newer record that made it superseded is indexed (that record's own write
        // may have failed, or a damaged read dropped it): then the caller finds it superseded and publishes nothing.
        if (job.Skipped && _tier.NewestVersion(job.Key) < job.Requested) job.Error = "the newer record of the key that superseded this write is not on disk";
        else if (job.Error is null && !job.Skipped)
            _tier.Apply(job.Key, job.Segment!, job.Offset, job.Length, job.Crc, job.Version, job.Kind == DiskRecord.KindTombstone, job.ExpiresAt);
        job.Segment?.Release();
        Interlocked.Decrement(ref _queued);
        job.Done.TrySetResult(job.Error is null ? new DiskWrite(true, job.Version, null) : new DiskWrite(false, job.Version, job.Error));
    }

    /// <summary>
    /// A record answered as failed after its index entry was written (a sync failed): the entry is zeroed, best effort,
    /// so recovery skips it (a torn entry) instead of bringing back, after a restart, a value whose PUT was refused.
    /// </summary>
    private void Unwrite(Job job)
    {
        try
        {
            job.Segment!.Index.Write(job.IndexOffset, new byte[DiskRecord.IndexEntrySize]);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or UnauthorizedAccessException)
        {
            _tier.WriteFailed(ex, job.Segment!.Index.Name);
        }
    }

    /// <summary>Writes everything queued so far, then stops the thread.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join();
        _queue.Dispose();
    }
}
