using System.Buffers;
using Kvasir.Net;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server.Internal;

/// <summary>Request handlers: one method per opcode.</summary>
internal sealed partial class Connection
{
    /// <summary>A PUT value is received and checksummed in chunks of this size, while the chunk is still in cache.</summary>
    private const int ReceiveChunk = 1 << 20;

    /// <summary>The CRC_TRAILER of the value being received (one PUT at a time per connection).</summary>
    private readonly Memory<byte> _trailer = new byte[PutRequest.TrailerSize];

    private readonly struct PutEntry(int keyOffset, int keyLength, long valueLength, uint crc32c, long version)
    {
        public int KeyOffset { get; } = keyOffset;
        public int KeyLength { get; } = keyLength;
        public long ValueLength { get; } = valueLength;

        /// <summary>The writer's CRC-32C (ValueCrc flag); 0 without it.</summary>
        public uint Crc32C { get; } = crc32c;
        /// <summary>The writer's version (PUT flag VERSION), or 0 for the node's clock.</summary>
        public long Version { get; } = version;
    }

    private ValueTask DispatchAsync(FrameHeader h, byte[] meta, CancellationToken token)
    {
        var span = meta.AsSpan(0, h.MetaLength);
        switch (h.Opcode)
        {
            case Opcode.Hello: return QueueAsync(Hello(h, span));
            case Opcode.Auth: return AuthAsync(h, meta);
            case Opcode.Ping: return QueueAsync(Ping(h, span));
            case Opcode.Stats: return QueueAsync(Stats(h));
            case Opcode.Get: return GetAsync(h, meta);
            case Opcode.Put: return PutAsync(h, meta, token);
            case Opcode.ShmInfo: return QueueAsync(ShmInfo(h));
            case Opcode.Lease: return LeaseAsync(h, meta);
            case Opcode.Release: return QueueAsync(Release(h, span));
            case Opcode.Alloc: return QueueAsync(Alloc(h, span));
            case Opcode.Commit: return CommitAsync(h, meta);
            case Opcode.Exists or Opcode.Remove or Opcode.Pin or Opcode.Unpin: return KeyOpAsync(h, meta);
            case Opcode.Scan or Opcode.Info or Opcode.RemovePrefix: return KeyAdminAsync(h, meta);
            default: throw new ProtocolException(WireStatus.UnknownOpcode, $"opcode {h.Opcode} has no handler");
        }
    }

    /// <summary>
    /// Queues a reply for the writer. Waiting for room is bounded by the frame timer (a client that
    /// does not read for the frame timeout is cut off) and by an abort. A reply that could not be
    /// queued still belongs to us: its leases are released here, or they would leak.
    /// </summary>
    private ValueTask QueueAsync(Reply reply) => _replies.Writer.TryWrite(reply) ? default : QueueSlowAsync(reply);

    private async ValueTask QueueSlowAsync(Reply reply)
    {
        try
        {
            // Linked per wait: _frame is reset with TryReset after every frame, which drops registrations.
            using var frameOrAbort = CancellationTokenSource.CreateLinkedTokenSource(_frame.Token, _abort.Token);
            await _replies.Writer.WriteAsync(reply, frameOrAbort.Token).ConfigureAwait(false);
        }
        catch
        {
            reply.Complete(_store);
            throw;
        }
    }

    private static Reply NewReply(FrameHeader request, WireStatus status, int metaLength, long payloadLength, out Span<byte> meta,
        ValueLease?[]? leases = null, int leaseCount = 0)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ProtocolLimits.HeaderSize + metaLength);
        new FrameHeader(request.Opcode, FrameFlags.Reply, request.RequestId, status, metaLength, payloadLength).Write(buffer);
        meta = buffer.AsSpan(ProtocolLimits.HeaderSize, metaLength);
        return Reply.Create(buffer, ProtocolLimits.HeaderSize + metaLength, leases, leaseCount);
    }

    private Reply Hello(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var request = HelloRequest.Read(meta);
        if (request.MinVersion > ProtocolLimits.Version || request.MaxVersion < ProtocolLimits.Version)
            throw new ProtocolException(WireStatus.UnsupportedVersion,
                $"client speaks versions {request.MinVersion}..{request.MaxVersion}; this node speaks {ProtocolLimits.Version}");
        _serverNonce = AuthRequired ? AuthHandshake.NewNonce() : new byte[ProtocolLimits.NonceBytes];
        var options = _node.Options;
        _features = request.Features & ProtocolFeatures.Known & ~options.WithheldFeatures;
        var reply = new HelloReply(ProtocolLimits.Version, _features, AuthRequired, _serverNonce,
            (ulong)options.Store.MaxValueBytes, (ushort)options.Store.MaxKeyBytes, (uint)options.MaxBatchKeys,
            (uint)options.MaxMetaBytes, (ulong)options.Store.Capacity, _node.NodeId);
        var r = NewReply(h, WireStatus.Ok, reply.Size, 0, out var span);
        var w = new MetaWriter(span);
        reply.Write(ref w);
        _helloDone = true;
        CountRequest(Opcode.Hello, 0);
        return r;
    }

    private async ValueTask AuthAsync(FrameHeader h, byte[] meta)
    {
        // An address that failed recently waits first (AuthThrottle), at most half the frame timeout.
        var delay = _node.AuthThrottle.DelayFor(_address);
        if (delay > TimeSpan.Zero)
        {
            var cap = _node.Options.FrameTimeout / 2;
            await Task.Delay(delay < cap ? delay : cap, _idle.Token).ConfigureAwait(false);
        }
        await QueueAsync(Auth(h, meta.AsSpan(0, h.MetaLength))).ConfigureAwait(false);
    }

    private Reply Auth(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var request = AuthRequest.Read(meta);
        var key = _node.Options.AuthKey!;
        var expected = AuthHandshake.ClientProof(key, _serverNonce!, request.ClientNonce);
        if (!AuthHandshake.ProofsEqual(expected, request.ClientProof))
        {
            _node.AuthThrottle.Failed(_address);
            throw new ProtocolException(WireStatus.AuthFailed, "authentication failed");
        }
        _authenticated = true;
        var reply = new AuthReply(AuthHandshake.ServerProof(key, _serverNonce!, request.ClientNonce));
        var r = NewReply(h, WireStatus.Ok, AuthReply.Size, 0, out var span);
        var w = new MetaWriter(span);
        reply.Write(ref w);
        CountRequest(Opcode.Auth, 0);
        return r;
    }

    private Reply Ping(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        if (meta.Length > ProtocolLimits.MaxPingBytes)
            throw new ProtocolException(WireStatus.FrameTooLarge, $"PING echo longer than {ProtocolLimits.MaxPingBytes} bytes");
        var r = NewReply(h, WireStatus.Ok, meta.Length, 0, out var span);
        meta.CopyTo(span);
        CountRequest(Opcode.Ping, 0);
        return r;
    }

    private Reply Stats(in FrameHeader h)
    {
        if (h.MetaLength != 0) throw new ProtocolException(WireStatus.BadFrame, "STATS takes no metadata");
        var stats = _node.StatsSnapshot();
        var r = NewReply(h, WireStatus.Ok, StatsReply.Size(stats), 0, out var span);
        var w = new MetaWriter(span);
        StatsReply.Write(ref w, stats);
        CountRequest(Opcode.Stats, 0);
        return r;
    }

    /// <summary>Each key's (offset, length) in the metadata, so handlers can await between keys (a span cannot be held across an await).</summary>
    private (int Offset, int Length)[] KeyRanges(byte[] meta, int metaLength, out int count)
    {
        var keys = new KeyBatchReader(meta.AsSpan(0, metaLength), _node.Options.MaxBatchKeys);
        count = keys.Count;
        var ranges = ArrayPool<(int, int)>.Shared.Rent(Math.Max(1, count));
        for (int i = 0; keys.Next(out var key); i++) ranges[i] = (keys.KeyOffset, key.Length);
        return ranges;
    }

    /// <summary>EXISTS, REMOVE, PIN, UNPIN: a status per key, nothing else. EXISTS and REMOVE may wait for the tiers below DRAM.</summary>
    private async ValueTask KeyOpAsync(FrameHeader h, byte[] meta)
    {
        var ranges = KeyRanges(meta, h.MetaLength, out int count);
        try
        {
            var reply = NewReply(h, WireStatus.Ok, StatusListReply.Size(count), 0, out _);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(reply.Buffer.AsSpan(ProtocolLimits.HeaderSize), (uint)count);
            for (int i = 0, prefetched = 0; i < count; i++)
            {
                if (i == prefetched) prefetched = _store.PrefetchIndex(meta, ranges.AsSpan(0, count), i);
                var key = meta.AsMemory(ranges[i].Offset, ranges[i].Length);
                var status = !ValidKey(key.Span) ? WireStatus.InvalidKey : h.Opcode switch
                {
                    Opcode.Exists => await _store.ExistsAsync(key).ConfigureAwait(false),
                    Opcode.Remove => await _store.RemoveAsync(key).ConfigureAwait(false),
                    Opcode.Pin => _store.Pin(key.Span),
                    _ => _store.Unpin(key.Span),
                };
                reply.Buffer[ProtocolLimits.HeaderSize + 4 + i] = (byte)status;
            }
            CountRequest(h.Opcode, count);
            await QueueAsync(reply).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<(int, int)>.Shared.Return(ranges);
        }
    }

    /// <summary>
    /// GET: lease every hit (DRAM hits at once; misses may wait for a read from the tiers below), then queue the
    /// reply; the writer sends each value straight from its lease and releases it. A value is whole or a miss: its
    /// length is fixed when it is leased.
    /// </summary>
    private async ValueTask GetAsync(FrameHeader h, byte[] meta)
    {
        var ranges = KeyRanges(meta, h.MetaLength, out int count);
        var leases = ArrayPool<ValueLease?>.Shared.Rent(Math.Max(1, count));
        int leased = 0;
        Reply reply;
        try
        {
            long payload = 0;
            for (int prefetched = 0; leased < count; leased++)
            {
                if (leased == prefetched) prefetched = _store.PrefetchIndex(meta, ranges.AsSpan(0, count), leased);
                var key = meta.AsMemory(ranges[leased].Offset, ranges[leased].Length);
                _node.Heatmap.Record(key.Span);
                ValueLease? lease = null;
                if (ValidKey(key.Span))
                {
                    var found = await _store.LeaseAsync(key, this).ConfigureAwait(false);
                    lease = found.Lease;
                    _node.AccessStats.Record(key.Span, lease is not null, found.Tier, lease?.Length ?? 0);
                }
                leases[leased] = lease;
                payload += lease?.Length ?? 0;
            }
            reply = NewReply(h, WireStatus.Ok, GetReply.Size(count, VersionsGranted), payload, out _, leases, count);
            WriteGetEntries(reply, meta, ranges, leases, count);
        }
        catch
        {
            for (int j = 0; j < leased; j++) if (leases[j] is { } l) _store.Release(l);
            ArrayPool<ValueLease?>.Shared.Return(leases, clearArray: true);
            throw;
        }
        finally
        {
            ArrayPool<(int, int)>.Shared.Return(ranges);
        }
        CountRequest(Opcode.Get, count);
        await QueueAsync(reply).ConfigureAwait(false);
    }

    private void WriteGetEntries(Reply reply, byte[] meta, (int Offset, int Length)[] ranges, ValueLease?[] leases, int count)
    {
        var w = new MetaWriter(reply.Buffer.AsSpan(ProtocolLimits.HeaderSize, GetReply.Size(count, VersionsGranted)));
        GetReply.WriteCount(ref w, count);
        for (int j = 0; j < count; j++)
        {
            var lease = leases[j];
            var status = lease is not null ? WireStatus.Ok : ValidKey(meta.AsSpan(ranges[j].Offset, ranges[j].Length)) ? WireStatus.NotFound : WireStatus.InvalidKey;
            GetReply.WriteEntry(ref w, new GetReplyEntry(status, lease?.Length ?? 0, lease?.Crc32C ?? 0) { Version = lease?.Sequence ?? 0 }, VersionsGranted);
        }
    }

    /// <summary>
    /// PUT: the whole metadata is validated first; then each value is received straight into its arena reservation
    /// and handed to the store, whose write to the disk tier (when there is one) overlaps the receipt of the next
    /// value. The reply waits for every value's commit: an Ok is durable as docs/tiers.md promises. A value that
    /// cannot be stored (bad key, too large, no room) gets its status and its bytes are read and dropped, so the
    /// connection stays in step. Chained values are published in order, so each finds its parent. With CRC_TRAILER a
    /// value's writer's CRC follows its bytes: it is read before the value is committed (or dropped with it).
    /// </summary>
    private async ValueTask PutAsync(FrameHeader h, byte[] meta, CancellationToken token)
    {
        int count = PutBatchReader.Validate(meta.AsSpan(0, h.MetaLength), h.Flags, _node.Options.MaxBatchKeys, h.PayloadLength);
        var entries = ArrayPool<PutEntry>.Shared.Rent(Math.Max(1, count));
        var commits = ArrayPool<Task<WireStatus>?>.Shared.Rent(Math.Max(1, count));
        var statuses = ArrayPool<WireStatus>.Shared.Rent(Math.Max(1, count));
        int parentOffset = -1, parentLength = 0;
        try
        {
            uint? ttlSeconds = CollectPutEntries(meta.AsSpan(0, h.MetaLength), h.Flags, entries, ref parentOffset, ref parentLength);
            TimeSpan? ttl = ttlSeconds is { } seconds ? TimeSpan.FromSeconds(seconds) : null;
            bool chain = (h.Flags & FrameFlags.Chain) != 0;
            bool trailer = (h.Flags & FrameFlags.CrcTrailer) != 0;
            bool writerCrc = trailer || (h.Flags & FrameFlags.ValueCrc) != 0;
            int trailerBytes = trailer ? PutRequest.TrailerSize : 0;
            Task? previous = null;
            for (int i = 0; i < count; i++)
            {
                var e = entries[i];
                commits[i] = null;
                var status = TryReserve(meta.AsSpan(e.KeyOffset, e.KeyLength), e.ValueLength, out var reservation);
                statuses[i] = status;
                if (status != WireStatus.Ok)
                {
                    await _rx.SkipAsync(e.ValueLength + trailerBytes, token).ConfigureAwait(false);
                    _node.Counters.In(Opcode.Put, e.ValueLength);
                    continue;
                }
                reservation!.Ttl = ttl;
                uint crc;
                try
                {
                    crc = await ReceiveValueAsync(reservation!, !writerCrc, token).ConfigureAwait(false);
                    bool largeNext = i + 1 < count && entries[i + 1].ValueLength >= BufferedReceiver.DirectReadMin;
                    if (trailer) crc = await ReceiveTrailerAsync(largeNext, token).ConfigureAwait(false);
                    else if (writerCrc) crc = e.Crc32C;
                }
                catch
                {
                    _store.Abort(reservation!);
                    throw;
                }
                byte[]? parent = !chain ? null
                    : i > 0 ? meta.AsSpan(entries[i - 1].KeyOffset, entries[i - 1].KeyLength).ToArray()
                    : parentOffset >= 0 ? meta.AsSpan(parentOffset, parentLength).ToArray() : null;
                var commit = _store.CommitAsync(reservation!, crc, parent, chain ? previous : null, writerCrc, e.Version,
                    parentFollows: i == 0 && (h.Flags & FrameFlags.ParentFollows) != 0);
                commits[i] = commit;
                if (chain) previous = commit;
            }
            for (int i = 0; i < count; i++)
                if (commits[i] is { } commit) statuses[i] = await commit.ConfigureAwait(false);
            var reply = NewReply(h, WireStatus.Ok, StatusListReply.Size(count), 0, out var span);
            var w = new MetaWriter(span);
            StatusListReply.Write(ref w, statuses.AsSpan(0, count));
            CountRequest(Opcode.Put, count);
            await QueueAsync(reply).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<PutEntry>.Shared.Return(entries);
            ArrayPool<Task<WireStatus>?>.Shared.Return(commits, clearArray: true);
            ArrayPool<WireStatus>.Shared.Return(statuses);
        }
    }

    /// <summary>Fills <paramref name="entries"/>; returns the entries' time to live in seconds with the Ttl flag, else null.</summary>
    private uint? CollectPutEntries(ReadOnlySpan<byte> meta, FrameFlags flags, PutEntry[] entries, ref int parentOffset, ref int parentLength)
    {
        var reader = new PutBatchReader(meta, flags, _node.Options.MaxBatchKeys);
        if ((flags & FrameFlags.ChainParent) != 0) { parentOffset = reader.ParentOffset; parentLength = reader.Parent.Length; }
        int i = 0;
        while (reader.Next(out var key, out long length))
            entries[i++] = new PutEntry(reader.KeyOffset, key.Length, length, reader.ValueCrc, reader.Version);
        return reader.TtlSeconds;
    }

    /// <summary>SCAN, INFO, REMOVE_PREFIX: answered by <see cref="KeyRequests"/> (shared with in-process clients).</summary>
    private async ValueTask KeyAdminAsync(FrameHeader h, byte[] meta)
    {
        var replyMeta = await KeyRequests.HandleAsync(_store, h.Opcode, meta.AsMemory(0, h.MetaLength), _node.Options).ConfigureAwait(false);
        var reply = NewReply(h, WireStatus.Ok, replyMeta.Length, 0, out var span);
        replyMeta.CopyTo(span);
        CountRequest(h.Opcode, 0);
        await QueueAsync(reply).ConfigureAwait(false);
    }

    private WireStatus TryReserve(ReadOnlySpan<byte> key, long length, out Reservation? reservation)
    {
        reservation = null;
        if (!ValidKey(key)) return WireStatus.InvalidKey;
        var status = _store.TryReserve(key, length, out reservation);
        _node.ArenaHealth.Note(status);
        return status;
    }

    /// <summary>Receives a value into its reservation; its CRC-32C when <paramref name="checksum"/>, else 0 (the writer sent it).</summary>
    private async ValueTask<uint> ReceiveValueAsync(Reservation reservation, bool checksum, CancellationToken token)
    {
        var memory = new NativeMemoryManager(reservation.Address, checked((int)reservation.Length)).Memory;
        uint crc = 0;
        if (!checksum) await _rx.ReadRequiredAsync(memory, token).ConfigureAwait(false);
        else
        {
            crc = Crc32C.InitialState;
            for (int offset = 0; offset < memory.Length; offset += ReceiveChunk)
            {
                var chunk = memory.Slice(offset, Math.Min(ReceiveChunk, memory.Length - offset));
                await _rx.ReadRequiredAsync(chunk, token).ConfigureAwait(false);
                crc = Crc32C.Append(crc, chunk.Span);
            }
            crc = Crc32C.Complete(crc);
        }
        _node.Counters.In(Opcode.Put, reservation.Length);
        _node.Counters.ValueIn(NodeTransport.Tcp, Opcode.Put, reservation.Length);
        return crc;
    }

    /// <summary>
    /// CRC_TRAILER: the writer's CRC-32C that follows a value in the payload. Read before the value is committed, so a
    /// stream that ends here leaves the value unpublished and its reservation to the caller's abort. When a large value
    /// follows (<paramref name="largeNext"/>) nothing past the trailer is read ahead, so that value goes straight from the
    /// socket into its reservation instead of its first bytes (up to the receive buffer's 64 KiB) being copied out of the
    /// buffer; before small values the read-ahead stays, one receive serving several of them.
    /// </summary>
    private async ValueTask<uint> ReceiveTrailerAsync(bool largeNext, CancellationToken token)
    {
        if (largeNext) await _rx.ReadRequiredExactAsync(_trailer, token).ConfigureAwait(false);
        else await _rx.ReadRequiredAsync(_trailer, token).ConfigureAwait(false);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_trailer.Span);
    }

    private void CountRequest(Opcode op, int keys)
    {
        _node.Counters.Request(op, keys);
        _lastKeys = keys;
    }

    private bool ValidKey(ReadOnlySpan<byte> key) => key.Length >= 1 && key.Length <= _node.Options.Store.MaxKeyBytes;
}
