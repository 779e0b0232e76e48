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

    private readonly struct PutEntry(int keyOffset, int keyLength, long valueLength)
    {
        public int KeyOffset { get; } = keyOffset;
        public int KeyLength { get; } = keyLength;
        public long ValueLength { get; } = valueLength;
    }

    private ValueTask DispatchAsync(FrameHeader h, byte[] meta, CancellationToken token)
    {
        var span = meta.AsSpan(0, h.MetaLength);
        switch (h.Opcode)
        {
            case Opcode.Hello: return QueueAsync(Hello(h, span));
            case Opcode.Auth: return QueueAsync(Auth(h, span));
            case Opcode.Ping: return QueueAsync(Ping(h, span));
            case Opcode.Stats: return QueueAsync(Stats(h));
            case Opcode.Get: return QueueAsync(Get(h, span));
            case Opcode.Put: return PutAsync(h, meta, token);
            case Opcode.ShmInfo: return QueueAsync(ShmInfo(h));
            case Opcode.Lease: return QueueAsync(Lease(h, span));
            case Opcode.Release: return QueueAsync(Release(h, span));
            case Opcode.Alloc: return QueueAsync(Alloc(h, span));
            case Opcode.Commit: return QueueAsync(Commit(h, span));
            default: return QueueAsync(KeyOp(h, span));
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
        var reply = new HelloReply(ProtocolLimits.Version, 0, AuthRequired, _serverNonce,
            (ulong)options.Store.MaxValueBytes, (ushort)options.Store.MaxKeyBytes, (uint)options.MaxBatchKeys,
            (uint)options.MaxMetaBytes, (ulong)options.Store.Capacity, _node.NodeId);
        var r = NewReply(h, WireStatus.Ok, reply.Size, 0, out var span);
        var w = new MetaWriter(span);
        reply.Write(ref w);
        _helloDone = true;
        CountRequest(Opcode.Hello, 0);
        return r;
    }

    private Reply Auth(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var request = AuthRequest.Read(meta);
        var key = _node.Options.AuthKey!;
        var expected = AuthHandshake.ClientProof(key, _serverNonce!, request.ClientNonce);
        if (!AuthHandshake.ProofsEqual(expected, request.ClientProof))
            throw new ProtocolException(WireStatus.AuthFailed, "authentication failed");
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

    /// <summary>EXISTS, REMOVE, PIN, UNPIN: a status per key, nothing else.</summary>
    private Reply KeyOp(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var keys = new KeyBatchReader(meta, _node.Options.MaxBatchKeys);
        var r = NewReply(h, WireStatus.Ok, StatusListReply.Size(keys.Count), 0, out var span);
        var w = new MetaWriter(span);
        w.U32((uint)keys.Count);
        while (keys.Next(out var key))
        {
            var status = !ValidKey(key) ? StoreStatus.InvalidKey : h.Opcode switch
            {
                Opcode.Exists => _store.Exists(key) || (_node.Tiers?.Contains(key) ?? false) ? StoreStatus.Ok : StoreStatus.NotFound,
                Opcode.Remove => Remove(key),
                Opcode.Pin => _store.Pin(key),
                Opcode.Unpin => _store.Unpin(key),
                _ => throw new ProtocolException(WireStatus.UnknownOpcode, $"opcode {h.Opcode} has no handler"),
            };
            w.U8((byte)StatusMap.ToWire(status));
        }
        CountRequest(h.Opcode, keys.Count);
        return r;
    }

    /// <summary>
    /// GET: lease every hit, then queue the reply; the writer sends each value straight from its
    /// lease and releases it. A value is whole or a miss: its length is fixed when it is leased.
    /// </summary>
    private Reply Get(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        var keys = new KeyBatchReader(meta, _node.Options.MaxBatchKeys);
        var leases = ArrayPool<ValueLease?>.Shared.Rent(Math.Max(1, keys.Count));
        int count = keys.Count, i = 0;
        long payload = 0;
        Span<byte> span = default;
        Reply? reply = null;
        try
        {
            while (keys.Next(out var key))
            {
                ValueLease? lease = null;
                _node.Heatmap.Record(key);
                if (ValidKey(key) && _store.TryLease(key, this, out lease) == StoreStatus.NotFound && _node.Tiers is { } tiers)
                    tiers.TryLoad(_store, key, this, out lease);
                leases[i++] = lease;
                payload += lease?.Length ?? 0;
            }
            reply = NewReply(h, WireStatus.Ok, GetReply.Size(count), payload, out span, leases, count);
        }
        catch
        {
            for (int j = 0; j < i; j++) if (leases[j] is { } l) _store.Release(l);
            ArrayPool<ValueLease?>.Shared.Return(leases, clearArray: true);
            throw;
        }
        var w = new MetaWriter(span);
        GetReply.WriteCount(ref w, count);
        keys = new KeyBatchReader(meta, _node.Options.MaxBatchKeys);
        for (int j = 0; j < count; j++)
        {
            keys.Next(out var key);
            var lease = leases[j];
            var status = lease is not null ? WireStatus.Ok : ValidKey(key) ? WireStatus.NotFound : WireStatus.InvalidKey;
            GetReply.WriteEntry(ref w, new GetReplyEntry(status, lease?.Length ?? 0, lease?.Crc32C ?? 0));
        }
        CountRequest(Opcode.Get, count);
        return reply;
    }

    /// <summary>
    /// PUT: the whole metadata is validated first; then each value is received straight into its
    /// arena reservation and published. A value that cannot be stored (bad key, too large, no room)
    /// gets its status and its bytes are read and dropped, so the connection stays in step.
    /// </summary>
    private async ValueTask PutAsync(FrameHeader h, byte[] meta, CancellationToken token)
    {
        int count = PutBatchReader.Validate(meta.AsSpan(0, h.MetaLength), h.Flags, _node.Options.MaxBatchKeys, h.PayloadLength);
        var entries = ArrayPool<PutEntry>.Shared.Rent(Math.Max(1, count));
        int parentOffset = -1, parentLength = 0;
        try
        {
            CollectPutEntries(meta.AsSpan(0, h.MetaLength), h.Flags, entries, ref parentOffset, ref parentLength);
            var reply = NewReply(h, WireStatus.Ok, StatusListReply.Size(count), 0, out _);
            bool chain = (h.Flags & FrameFlags.Chain) != 0;
            try
            {
                for (int i = 0; i < count; i++)
                {
                    var e = entries[i];
                    var status = await PutOneAsync(meta, e, token, chain, i == 0 ? parentOffset : entries[i - 1].KeyOffset,
                        i == 0 ? parentLength : entries[i - 1].KeyLength).ConfigureAwait(false);
                    reply.Buffer[ProtocolLimits.HeaderSize + 4 + i] = (byte)status;
                }
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(reply.Buffer);
                throw;
            }
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(reply.Buffer.AsSpan(ProtocolLimits.HeaderSize), (uint)count);
            CountRequest(Opcode.Put, count);
            await QueueAsync(reply).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<PutEntry>.Shared.Return(entries);
        }
    }

    private void CollectPutEntries(ReadOnlySpan<byte> meta, FrameFlags flags, PutEntry[] entries, ref int parentOffset, ref int parentLength)
    {
        var reader = new PutBatchReader(meta, flags, _node.Options.MaxBatchKeys);
        if ((flags & FrameFlags.ChainParent) != 0) { parentOffset = reader.ParentOffset; parentLength = reader.Parent.Length; }
        int i = 0;
        while (reader.Next(out var key, out long length))
            entries[i++] = new PutEntry(reader.KeyOffset, key.Length, length);
    }

    private async ValueTask<WireStatus> PutOneAsync(byte[] meta, PutEntry e, CancellationToken token, bool chain, int parentOffset, int parentLength)
    {
        var status = TryReserve(meta.AsSpan(e.KeyOffset, e.KeyLength), e.ValueLength, out var reservation);
        if (status != StoreStatus.Ok)
        {
            await _rx.SkipAsync(e.ValueLength, token).ConfigureAwait(false);
            _node.Counters.In(Opcode.Put, e.ValueLength);
            return StatusMap.ToWire(status);
        }
        uint crc;
        try
        {
            crc = await ReceiveValueAsync(reservation!, token).ConfigureAwait(false);
        }
        catch
        {
            _store.Abort(reservation!);
            throw;
        }
        // With tiers, the value is on disk before it is published and acknowledged (docs/tiers.md).
        _node.Tiers?.OnStored(meta.AsSpan(e.KeyOffset, e.KeyLength), reservation!.Span, crc);
        var parent = chain && parentOffset >= 0 ? meta.AsSpan(parentOffset, parentLength) : default;
        return StatusMap.ToWire(_store.Commit(reservation!, crc, parent));
    }

    private StoreStatus TryReserve(ReadOnlySpan<byte> key, long length, out Reservation? reservation)
    {
        reservation = null;
        if (!ValidKey(key)) return StoreStatus.InvalidKey;
        var status = _store.TryReserve(key, length, out reservation);
        _node.ArenaHealth.Note(status);
        return status;
    }

    private async ValueTask<uint> ReceiveValueAsync(Reservation reservation, CancellationToken token)
    {
        var memory = new NativeMemoryManager(reservation.Address, checked((int)reservation.Length)).Memory;
        uint crc = Crc32C.InitialState;
        for (int offset = 0; offset < memory.Length; offset += ReceiveChunk)
        {
            var chunk = memory.Slice(offset, Math.Min(ReceiveChunk, memory.Length - offset));
            await _rx.ReadRequiredAsync(chunk, token).ConfigureAwait(false);
            crc = Crc32C.Append(crc, chunk.Span);
        }
        _node.Counters.In(Opcode.Put, reservation.Length);
        return Crc32C.Complete(crc);
    }

    /// <summary>Lower tiers first, so no reader can load the key back from them once DRAM has dropped it.</summary>
    private StoreStatus Remove(ReadOnlySpan<byte> key)
    {
        bool below = _node.Tiers?.OnRemoved(key) ?? false;
        var status = _store.Remove(key);
        return status == StoreStatus.NotFound && below ? StoreStatus.Ok : status;
    }

    private void CountRequest(Opcode op, int keys)
    {
        _node.Counters.Request(op, keys);
        _lastKeys = keys;
    }

    private bool ValidKey(ReadOnlySpan<byte> key) => key.Length >= 1 && key.Length <= _node.Options.Store.MaxKeyBytes;
}
