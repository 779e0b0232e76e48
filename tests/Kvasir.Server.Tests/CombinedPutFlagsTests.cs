using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// A PUT with VALUE_CRC, VERSION and TTL together (features 0x1, 0x4, 0x2): each entry is the key, then the writer's
/// CRC, then the version; the TTL follows the last entry (docs/protocol.md § PUT). Read back, every hit carries the
/// CRC and the version that were sent with it.
/// </summary>
public sealed class CombinedPutFlagsTests
{
    private const FrameFlags All = FrameFlags.ValueCrc | FrameFlags.Version | FrameFlags.Ttl;

    private static byte[] PutAll(ulong id, uint ttlSeconds, params (byte[] Key, byte[] Value, uint Crc, long Version)[] entries)
    {
        var meta = new byte[PutRequest.PrefixSize(default, false) + PutRequest.SuffixSize(true)
            + entries.Sum(e => PutRequest.EntrySize(e.Key.Length, valueCrc: true, version: true))];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, default, false, entries.Length);
        foreach (var (key, value, crc, version) in entries) PutRequest.WriteEntry(ref w, key, value.Length, crc, version);
        PutRequest.WriteTtl(ref w, ttlSeconds);
        return Frame(Opcode.Put, id, meta, entries.SelectMany(e => e.Value).ToArray(), All);
    }

    private static async Task<WireStatus[]> PutAsync(RawConnection c, ulong id, params (byte[] Key, byte[] Value, uint Crc, long Version)[] entries)
    {
        var reply = await c.RequestAsync(PutAll(id, 3600, entries));
        RawConnection.AssertReply(reply, Opcode.Put, id);
        return StatusListReply.Read(reply.Meta, entries.Length);
    }

    private static async Task<(GetReplyEntry[] Entries, byte[] Payload)> GetAsync(RawConnection c, ulong id, params byte[][] keys)
    {
        var reply = await c.RequestAsync(Get(id, keys));
        RawConnection.AssertReply(reply, Opcode.Get, id);
        return (GetReply.Read(reply.Meta, keys.Length, reply.Header.PayloadLength, versioned: true), reply.Payload);
    }

    [Fact]
    public async Task Crc_version_and_ttl_in_one_put_are_each_read_from_their_place()
    {
        await using var node = ServerNode.Start();
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.Known, (await c.HelloAsync(1, ProtocolFeatures.Known)).Features);
        var a = Value(11, 70_000);
        var b = Value(12, 3000);
        var bad = Value(13, 5000);
        long va = (1_764_000_000_000L << 16) | 5, vb = va + 1;
        var statuses = await PutAsync(c, 2, (Key("a"), a, Crc32C.Compute(a), va), (Key("b"), b, Crc32C.Compute(b), vb),
            (Key("bad"), bad, Crc32C.Compute(bad) ^ 1, vb));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok, WireStatus.Ok], statuses);

        var (entries, payload) = await GetAsync(c, 3, Key("a"), Key("b"), Key("bad"));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok, WireStatus.NotFound], entries.Select(e => e.Status));
        Assert.Equal([Crc32C.Compute(a), Crc32C.Compute(b), 0u], entries.Select(e => e.Crc32C));
        Assert.Equal([va, vb, 0L], entries.Select(e => e.Version));
        Assert.Equal(a.Concat(b).ToArray(), payload);

        // An older version with all three flags is acknowledged and does not replace the newer value.
        var older = Value(14, 100);
        Assert.Equal([WireStatus.Ok], await PutAsync(c, 4, (Key("b"), older, Crc32C.Compute(older), vb - 2)));
        (entries, payload) = await GetAsync(c, 5, Key("b"));
        Assert.Equal(vb, entries[0].Version);
        Assert.Equal(b, payload);
    }
}
