using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using Kvasir.TestSupport;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>
/// PUT flag PARENT_FOLLOWS (feature LATE_PARENT, 0x40): a chained PUT whose CHAIN_PARENT is not stored yet is linked to
/// it when it comes, even on another connection; the flag is refused where it was not granted or has no parent to name.
/// </summary>
public sealed class LateParentTests
{
    private static byte[] ChainedPut(ulong id, byte[] parent, FrameFlags extra, params (byte[] Key, byte[] Value)[] entries)
    {
        var meta = PutMeta(entries.Select(e => (e.Key, (long)e.Value.Length)).ToArray(), parent);
        return Frame(Opcode.Put, id, meta, entries.SelectMany(e => e.Value).ToArray(), FrameFlags.Chain | FrameFlags.ChainParent | extra);
    }

    [Fact]
    public async Task A_run_that_lands_before_the_run_ending_with_its_parent_is_linked_when_that_run_lands_on_another_connection()
    {
        await using var node = ServerNode.Start();
        using var second = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(ProtocolFeatures.LateParent, (await second.HelloAsync(1, ProtocolFeatures.LateParent)).Features);
        using var first = await RawConnection.ConnectAsync(node.Port);
        await first.HelloAsync(1, ProtocolFeatures.LateParent);

        // Run 1 (blocks 2-3, continuing block 1) lands first; run 0 (blocks 0-1) after it, on its own connection.
        var late = await second.RequestAsync(ChainedPut(2, Key("c/1"), FrameFlags.ParentFollows, (Key("c/2"), Value(2, 4096)), (Key("c/3"), Value(3, 4096))));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], StatusListReply.Read(late.Meta, 2));
        Assert.Equal(1, node.Stats.LateParentWaits);
        var early = await first.RequestAsync(ChainedPut(2, Key("root"), FrameFlags.None, (Key("c/0"), Value(0, 4096)), (Key("c/1"), Value(1, 4096))));
        Assert.Equal([WireStatus.Ok, WireStatus.Ok], StatusListReply.Read(early.Meta, 2));
        Assert.Equal(1, node.Stats.LateParentLinks);
        Assert.Equal(0, node.Stats.LateParentWaits);
    }

    [Fact]
    public async Task Parent_follows_on_a_connection_not_granted_late_parent_is_a_bad_frame_naming_the_feature()
    {
        await using var node = TestNode.Start(new NodeOptions { Port = 0, Store = new Storage.StoreOptions { Capacity = 64L << 20 }, WithheldFeatures = ProtocolFeatures.LateParent });
        using var c = await RawConnection.ConnectAsync(node.Port);
        Assert.Equal(0UL, (await c.HelloAsync(1, ProtocolFeatures.LateParent)).Features & ProtocolFeatures.LateParent);
        await c.SendAsync(ChainedPut(2, Key("p"), FrameFlags.ParentFollows, (Key("k"), Value(1, 100))));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 2, Opcode.Put);
        Assert.Contains("PARENT_FOLLOWS (0x0100) needs feature LATE_PARENT (HELLO bit 0x40)", error.ErrorMessage);
        Assert.Equal(0L, node.Stats.Keys);
    }

    [Fact]
    public async Task Parent_follows_without_a_chain_parent_is_a_bad_frame_and_nothing_is_stored()
    {
        await using var node = ServerNode.Start();
        using var c = await RawConnection.ConnectAsync(node.Port);
        await c.HelloAsync(1, ProtocolFeatures.LateParent);
        var meta = PutMeta([(Key("k"), 100L)]);
        await c.SendAsync(Frame(Opcode.Put, 2, meta, Value(1, 100), FrameFlags.Chain | FrameFlags.ParentFollows));
        var error = await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 2, Opcode.Put);
        Assert.Contains("without CHAIN_PARENT", error.ErrorMessage);
        Assert.Equal(0L, node.Stats.Keys);
    }
}
