using System.IO.MemoryMappedFiles;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// Shared-memory writes without the node's passes (feature 0x8, docs/protocol.md § Writes without the node's passes):
/// a connection that proves it reads the arena file gets its reservations unzeroed, may send its CRCs with COMMIT
/// (checked before the first read: a byte changed in the arena after COMMIT is a miss) or leave the CRC to the node's
/// first read; every other connection keeps zeroed space and CRCs at COMMIT. ALLOC may carry a TTL.
/// </summary>
public sealed class ArenaProofTests
{
    private const int ValueBytes = 64 * 1024;

    private static TestNode StartShmNode() => TestNode.Start(new NodeOptions
    {
        Port = 0,
        SharedMemory = true,
        Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 4L << 20 },
    });

    /// <summary>A raw connection granted ARENA_PROOF and TTL, its SHM_INFO read, and its proof made from the arena file's secret.</summary>
    private sealed class Writer : IDisposable
    {
        private ulong _id = 10;

        private Writer(RawConnection connection, MemoryMappedFile file, MemoryMappedViewAccessor arena, byte[] proof)
        {
            Connection = connection;
            File = file;
            Arena = arena;
            Proof = proof;
        }

        public RawConnection Connection { get; }

        public MemoryMappedFile File { get; }

        public MemoryMappedViewAccessor Arena { get; }

        public byte[] Proof { get; }

        public ulong NextId => ++_id;

        public static async Task<Writer> OpenAsync(TestNode node)
        {
            var c = await RawConnection.ConnectAsync(node.Port);
            var hello = await c.HelloAsync(1, ProtocolFeatures.ArenaProof | ProtocolFeatures.Ttl);
            Assert.Equal(ProtocolFeatures.ArenaProof | ProtocolFeatures.Ttl, hello.Features);
            var reply = await c.RequestAsync(Frame(Opcode.ShmInfo, 2, []));
            RawConnection.AssertReply(reply, Opcode.ShmInfo, 2);
            var info = ShmInfoReply.Read(reply.Meta);
            Assert.NotNull(info.Challenge);
            var secret = new byte[ArenaProof.SecretBytes];
            using (var f = new FileStream(info.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                Assert.Equal(secret.Length, RandomAccess.Read(f.SafeFileHandle, secret, (long)info.ArenaLength));
            var file = MemoryMappedFile.CreateFromFile(info.Path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
            var arena = file.CreateViewAccessor(0, (long)info.ArenaLength, MemoryMappedFileAccess.ReadWrite);
            return new Writer(c, file, arena, ArenaProof.Compute(secret, info.Challenge!));
        }

        public async Task<AllocEntry[]> AllocAsync(byte[]? proof, uint? ttl, params (byte[] Key, long Length)[] entries)
        {
            ulong id = NextId;
            var reply = await Connection.RequestAsync(AllocFrame(id, proof, ttl, entries));
            RawConnection.AssertReply(reply, Opcode.Alloc, id);
            return ShmMessages.ReadAllocReply(reply.Meta);
        }

        public async Task<WireStatus[]> CommitAsync(ulong[] ids, uint[]? crcs)
        {
            ulong id = NextId;
            var meta = new byte[crcs is null ? ShmMessages.IdListSize(ids.Length) : ShmMessages.CommitCrcRequestSize(ids.Length)];
            var w = new MetaWriter(meta);
            if (crcs is null) ShmMessages.WriteIdList(ref w, ids);
            else ShmMessages.WriteCommitCrcs(ref w, ids, crcs);
            var reply = await Connection.RequestAsync(Frame(Opcode.Commit, id, meta, flags: crcs is null ? FrameFlags.None : FrameFlags.CommitCrc));
            RawConnection.AssertReply(reply, Opcode.Commit, id);
            return StatusListReply.Read(reply.Meta, ids.Length);
        }

        public async Task<(GetReplyEntry Entry, byte[] Payload)> GetAsync(byte[] key)
        {
            ulong id = NextId;
            var reply = await Connection.RequestAsync(Get(id, key));
            RawConnection.AssertReply(reply, Opcode.Get, id);
            return (GetReply.Read(reply.Meta, 1, reply.Header.PayloadLength)[0], reply.Payload);
        }

        public void Write(ulong offset, byte[] value) => Arena.WriteArray((long)offset, value, 0, value.Length);

        public void Flip(ulong offset) => Arena.Write((long)offset, (byte)(Arena.ReadByte((long)offset) ^ 0x01));

        public void Dispose()
        {
            Arena.Dispose();
            File.Dispose();
            Connection.Dispose();
        }
    }

    private static byte[] AllocFrame(ulong id, byte[]? proof, uint? ttl, params (byte[] Key, long Length)[] entries)
    {
        var meta = new byte[4 + entries.Sum(e => 2 + e.Key.Length + 8) + ShmMessages.AllocSuffixSize(ttl is not null, proof is not null)];
        var w = new MetaWriter(meta);
        w.U32((uint)entries.Length);
        foreach (var (key, length) in entries) ShmMessages.WriteAllocEntry(ref w, key, length);
        ShmMessages.WriteAllocSuffix(ref w, ttl, proof);
        var flags = (ttl is not null ? FrameFlags.Ttl : 0) | (proof is not null ? FrameFlags.Mapped : 0);
        return Frame(Opcode.Alloc, id, meta, flags: flags);
    }

    private static long Stat(TestNode node, string name) => node.Node.StatsSnapshot().Single(s => s.Key == name).Value;

    [Fact]
    public async Task A_connection_that_proves_it_reads_the_arena_gets_space_unzeroed_and_one_without_the_proof_gets_zeros()
    {
        // Secrets fill the arena and are removed, so the allocator hands their space out again. The proven connection
        // could read those bytes through its mapping anyway; the connection without a proof must still see zeros.
        await using var node = StartShmNode();
        using var writer = await Writer.OpenAsync(node);
        const int Secrets = 64;
        for (int round = 0; round < 2; round++)
        {
            for (int i = 0; i < Secrets; i++)
            {
                var put = await writer.Connection.RequestAsync(Put(writer.NextId, (Key($"secret/{i}"), Filled(ValueBytes, 0xAB))));
                Assert.Equal([WireStatus.Ok], StatusListReply.Read(put.Meta, 1));
            }
            var removed = await writer.Connection.RequestAsync(KeyOp(Opcode.Remove, writer.NextId, Enumerable.Range(0, Secrets).Select(i => Key($"secret/{i}")).ToArray()));
            Assert.Equal(Opcode.Remove, removed.Header.Opcode);
            bool proven = round == 0;
            var entries = await writer.AllocAsync(proven ? writer.Proof : null, null,
                Enumerable.Range(0, Secrets).Select(i => (Key($"probe/{round}/{i}"), (long)ValueBytes)).ToArray());
            Assert.All(entries, e => Assert.Equal(WireStatus.Ok, e.Status));
            Assert.All(await writer.CommitAsync(entries.Select(e => e.ReservationId).ToArray(), null), s => Assert.Equal(WireStatus.Ok, s));
            int stale = 0;
            for (int i = 0; i < Secrets; i++)
            {
                var (entry, payload) = await writer.GetAsync(Key($"probe/{round}/{i}"));
                Assert.Equal(WireStatus.Ok, entry.Status);
                Assert.Equal(Crc32C.Compute(payload), entry.Crc32C);   // the CRC the node owed, computed at this first read
                if (payload.Any(b => b != 0)) stale++;
            }
            if (proven) Assert.True(stale > 0, "a proven connection's reservations were zeroed: the node still pays the zeroing pass");
            else Assert.Equal(0, stale);
        }
        Assert.Equal(0, node.Stats.Reservations);
    }

    [Fact]
    public async Task A_wrong_arena_proof_is_refused_naming_the_secret_and_reserves_nothing()
    {
        await using var node = StartShmNode();
        using var writer = await Writer.OpenAsync(node);
        var wrong = (byte[])writer.Proof.Clone();
        wrong[5] ^= 0x40;
        await writer.Connection.SendAsync(AllocFrame(30, wrong, null, (Key("k"), 4096)));
        var error = await writer.Connection.AssertErrorThenClosedAsync(WireStatus.BadFrame, 30, Opcode.Alloc);
        Assert.Contains("arena proof is wrong", error.ErrorMessage, StringComparison.Ordinal);
        Assert.Contains("arena_length", error.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, node.Stats.Reservations);
    }

    [Fact]
    public async Task Mapped_and_commit_crc_flags_without_the_feature_are_bad_frames()
    {
        await using var node = StartShmNode();
        var (c, _) = await RawConnection.ConnectHelloAsync(node.Port);
        using var _c = c;
        await c.SendAsync(AllocFrame(3, new byte[ArenaProof.ProofBytes], null, (Key("k"), 16)));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 3, Opcode.Alloc);
        Assert.Contains("not valid for Alloc", error.ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_byte_flipped_in_the_arena_after_a_commit_with_the_writers_crc_and_before_the_first_read_is_a_miss()
    {
        await using var node = StartShmNode();
        using var writer = await Writer.OpenAsync(node);
        var good = Value(1, ValueBytes);
        var bad = Value(2, ValueBytes);
        var entries = await writer.AllocAsync(writer.Proof, null, (Key("good"), ValueBytes), (Key("bad"), ValueBytes));
        writer.Write(entries[0].Offset, good);
        writer.Write(entries[1].Offset, bad);
        var statuses = await writer.CommitAsync([entries[0].ReservationId, entries[1].ReservationId], [Crc32C.Compute(good), Crc32C.Compute(bad)]);
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], statuses);
        writer.Flip(entries[1].Offset + 1000);   // after COMMIT, before anything read it

        var (entry, payload) = await writer.GetAsync(Key("bad"));
        Assert.Equal(WireStatus.NotFound, entry.Status);
        Assert.Empty(payload);
        Assert.Equal(1, Stat(node, "crc_mismatches"));
        (entry, payload) = await writer.GetAsync(Key("good"));
        Assert.Equal(WireStatus.Ok, entry.Status);
        Assert.Equal(good, payload);
        Assert.Equal(Crc32C.Compute(good), entry.Crc32C);
    }

    [Fact]
    public async Task A_mapped_commit_without_crcs_is_checksummed_at_its_first_read_and_a_later_flip_fails_the_readers_check()
    {
        await using var node = StartShmNode();
        using var writer = await Writer.OpenAsync(node);
        var value = Value(3, ValueBytes);
        var entries = await writer.AllocAsync(writer.Proof, null, (Key("lazy"), ValueBytes));
        writer.Write(entries[0].Offset, value);
        Assert.Equal([WireStatus.Ok], await writer.CommitAsync([entries[0].ReservationId], null));

        var (entry, payload) = await writer.GetAsync(Key("lazy"));
        Assert.Equal(WireStatus.Ok, entry.Status);
        Assert.Equal(value, payload);
        Assert.Equal(Crc32C.Compute(value), entry.Crc32C);

        writer.Flip(entries[0].Offset + 7);   // after the first read fixed the CRC: a reader that checks it refuses the bytes
        (entry, payload) = await writer.GetAsync(Key("lazy"));
        Assert.Equal(Crc32C.Compute(value), entry.Crc32C);
        Assert.NotEqual(entry.Crc32C, Crc32C.Compute(payload));
    }

    [Fact]
    public async Task An_alloc_with_a_ttl_stores_a_value_that_expires_and_without_one_the_node_default_applies()
    {
        await using var node = StartShmNode();
        using var writer = await Writer.OpenAsync(node);
        var entries = await writer.AllocAsync(writer.Proof, 600, (Key("ttl/600"), 16));
        var plain = await writer.AllocAsync(null, null, (Key("ttl/none"), 16));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], await writer.CommitAsync([entries[0].ReservationId, plain[0].ReservationId], null));

        ulong id = writer.NextId;
        var reply = await writer.Connection.RequestAsync(KeyOp(Opcode.Info, id, Key("ttl/600"), Key("ttl/none")));
        RawConnection.AssertReply(reply, Opcode.Info, id);
        var info = InfoReply.Read(reply.Meta, 2);
        Assert.InRange(info[0].TtlMs, 590_000, 600_000);
        Assert.Equal(0, info[1].TtlMs);
    }
}
