using System.IO.MemoryMappedFiles;
using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.Storage;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// COMMIT with CHAIN / CHAIN_PARENT (feature 0x20, docs/protocol.md § Chains through the arena) from a raw client that
/// does what the Kvasir clients never do: an id twice in one COMMIT, an id it never got, an id committed before, a
/// parent that is one of the chain's own keys, an empty chain with a parent. Each id is published at most once, the
/// others answer NOT_FOUND, the bytes read back are the ones written, and nothing stays reserved (TestNode fails the
/// test on a leaked reservation or lease when it stops).
/// </summary>
public sealed class CommitChainTests
{
    private const int ValueBytes = 64 * 1024;

    [Fact]
    public async Task Repeated_unknown_and_spent_ids_in_a_chained_commit_answer_not_found_and_each_value_is_published_once()
    {
        await using var node = TestNode.Start(new NodeOptions
        {
            Port = 0,
            SharedMemory = true,
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1L << 20, Eviction = EvictionPolicyKind.PrefixAware },
        });
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.CommitChain, (await c.HelloAsync(1, ProtocolFeatures.CommitChain)).Features);
        var info = ShmInfoReply.Read((await c.RequestAsync(Frame(Opcode.ShmInfo, 2, []))).Meta);
        using var file = MemoryMappedFile.CreateFromFile(info.Path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        using var arena = file.CreateViewAccessor(0, (long)info.ArenaLength, MemoryMappedFileAccess.ReadWrite);

        byte[][] keys = [Key("chain/0"), Key("chain/1"), Key("chain/2")];
        var values = keys.Select((_, i) => Value(i, ValueBytes)).ToArray();
        var reserved = await AllocAsync(c, 3, keys);
        for (int i = 0; i < keys.Length; i++) arena.WriteArray((long)reserved[i].Offset, values[i], 0, ValueBytes);
        ulong a = reserved[0].ReservationId, b = reserved[1].ReservationId, d = reserved[2].ReservationId;

        // a twice, an id never reserved, then b and d; the parent is the chain's own last key (not stored yet).
        Assert.Equal([WireStatus.Ok, WireStatus.NotFound, WireStatus.NotFound, WireStatus.Ok, WireStatus.Ok],
            await CommitAsync(c, 4, [a, a, 999_999, b, d], keys[2]));
        // Spent ids, and an empty chain with a parent.
        Assert.Equal([WireStatus.NotFound, WireStatus.NotFound], await CommitAsync(c, 5, [a, d], keys[0]));
        Assert.Empty(await CommitAsync(c, 6, [], Key("nothing")));
        Assert.Equal(0, Stat(node, "reservations"));

        for (int i = 0; i < keys.Length; i++)
        {
            var reply = await c.RequestAsync(Get((ulong)(10 + i), keys[i]));
            var entry = GetReply.Read(reply.Meta, 1, reply.Header.PayloadLength)[0];
            Assert.Equal(WireStatus.Ok, entry.Status);
            Assert.Equal(Crc32C.Compute(values[i]), entry.Crc32C);
            Assert.True(values[i].AsSpan().SequenceEqual(reply.Payload), $"{i}: other bytes than were written");
        }
        Assert.Equal(3, Stat(node, "keys"));

        // A reservation left uncommitted goes back when its connection ends.
        await AllocAsync(c, 20, [Key("never")]);
        Assert.Equal(1, Stat(node, "reservations"));
    }

    private static async Task<AllocEntry[]> AllocAsync(RawConnection c, ulong id, byte[][] keys)
    {
        var meta = new byte[4 + keys.Sum(k => 2 + k.Length + 8)];
        var w = new MetaWriter(meta);
        w.U32((uint)keys.Length);
        foreach (var key in keys) ShmMessages.WriteAllocEntry(ref w, key, ValueBytes);
        var reply = await c.RequestAsync(Frame(Opcode.Alloc, id, meta));
        RawConnection.AssertReply(reply, Opcode.Alloc, id);
        var entries = ShmMessages.ReadAllocReply(reply.Meta);
        Assert.All(entries, e => Assert.Equal(WireStatus.Ok, e.Status));
        return entries;
    }

    private static async Task<WireStatus[]> CommitAsync(RawConnection c, ulong id, ulong[] ids, byte[] parent)
    {
        var meta = new byte[ShmMessages.IdListSize(ids.Length) + ShmMessages.CommitParentSize(parent)];
        var w = new MetaWriter(meta);
        ShmMessages.WriteIdList(ref w, ids);
        ShmMessages.WriteCommitParent(ref w, parent);
        var reply = await c.RequestAsync(Frame(Opcode.Commit, id, meta, flags: FrameFlags.Chain | FrameFlags.ChainParent));
        RawConnection.AssertReply(reply, Opcode.Commit, id);
        return StatusListReply.Read(reply.Meta, ids.Length);
    }

    private static long Stat(TestNode node, string name) => node.Node.StatsSnapshot().Single(s => s.Key == name).Value;
}
