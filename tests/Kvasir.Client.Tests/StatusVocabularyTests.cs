using Kvasir.Protocol;

namespace Kvasir.Client.Tests;

/// <summary>The client's per-key statuses are the wire's, number for number and name for name.</summary>
public sealed class StatusVocabularyTests
{
    public static TheoryData<WireStatus> PerKeyWireStatuses => new(Enum.GetValues<WireStatus>().Where(WireStatuses.IsPerKey));

    public static TheoryData<WireStatus> FrameWireStatuses => new(Enum.GetValues<WireStatus>().Where(s => !WireStatuses.IsPerKey(s)));

    [Theory]
    [MemberData(nameof(PerKeyWireStatuses))]
    public void Every_per_key_wire_status_maps_to_the_KvStatus_of_the_same_number_and_name(WireStatus wire)
    {
        var status = KvStatuses.FromWire(wire);

        Assert.Equal((int)wire, (int)status);
        Assert.Equal(wire.ToString(), status.ToString());
        Assert.True(Enum.IsDefined(status), $"KvStatus has no member numbered {(int)wire} for WireStatus.{wire}");
    }

    [Theory]
    [MemberData(nameof(FrameWireStatuses))]
    public void A_frame_level_wire_status_is_a_protocol_error_for_the_key(WireStatus wire)
        => Assert.Equal(KvStatus.ProtocolError, KvStatuses.FromWire(wire));

    [Fact]
    public void A_per_key_number_the_protocol_does_not_define_is_a_protocol_error_not_a_client_status()
    {
        // 16 is KvStatus.BufferTooSmall, a client-side answer a node must never be able to produce.
        Assert.Equal(KvStatus.ProtocolError, KvStatuses.FromWire((WireStatus)16));
        Assert.Equal(KvStatus.ProtocolError, KvStatuses.FromWire((WireStatus)31));
    }

    [Fact]
    public void Client_side_statuses_do_not_collide_with_per_key_wire_numbers()
    {
        var wire = Enum.GetValues<WireStatus>().Where(WireStatuses.IsPerKey).Select(s => (int)s).ToHashSet();
        foreach (var status in Enum.GetValues<KvStatus>())
            if (!wire.Contains((int)status))
                Assert.True((int)status >= 16, $"KvStatus.{status} ({(int)status}) sits among the wire's per-key numbers but is not a wire status");
    }
}
