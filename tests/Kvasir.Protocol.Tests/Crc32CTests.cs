using System.Text;
using Kvasir.Protocol;

namespace Kvasir.Protocol.Tests;

public sealed class Crc32CTests
{
    [Fact]
    public void Check_string_123456789_gives_the_standard_value_E3069283()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));
    }

    [Fact]
    public void Empty_input_gives_zero()
    {
        Assert.Equal(0u, Crc32C.Compute([]));
        Assert.Equal(0u, Crc32C.Complete(Crc32C.InitialState));
    }

    [Fact]
    public void Thirty_two_zero_bytes_give_the_rfc3720_value()
    {
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
    }

    [Fact]
    public void Every_length_around_the_eight_byte_stride_matches_a_bitwise_reference()
    {
        var random = new Random(7);
        for (int length = 0; length <= 70; length++)
        {
            byte[] data = new byte[length];
            random.NextBytes(data);
            Assert.Equal(~Crc32CReference.Register(Crc32C.InitialState, data), Crc32C.Compute(data));
        }
    }

    [Fact]
    public void Incremental_append_equals_one_shot_at_every_pair_of_split_points()
    {
        byte[] data = new byte[61];
        new Random(11).NextBytes(data);
        uint expected = Crc32C.Compute(data);
        for (int first = 0; first <= data.Length; first++)
        {
            for (int second = first; second <= data.Length; second++)
            {
                uint state = Crc32C.InitialState;
                state = Crc32C.Append(state, data.AsSpan(0, first));
                state = Crc32C.Append(state, data.AsSpan(first, second - first));
                state = Crc32C.Append(state, data.AsSpan(second));
                Assert.Equal(expected, Crc32C.Complete(state));
            }
        }
    }
}

public sealed class Crc32CStripingTests
{
    [Theory]
    [InlineData(Crc32C.InterleaveThreshold - 1)]
    [InlineData(Crc32C.InterleaveThreshold)]
    [InlineData(Crc32C.InterleaveThreshold + 1)]
    [InlineData(Crc32C.InterleaveThreshold + 7)]
    [InlineData(4096)]
    [InlineData(65_537)]
    [InlineData(1 << 20)]
    [InlineData((1 << 20) + 13)]
    public void Striped_checksum_equals_the_bitwise_definition_at_and_around_the_striping_threshold(int length)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        uint expected = Crc32CReference.Register(Crc32C.InitialState, data);
        Assert.Equal(expected, Crc32C.AppendStriped(Crc32C.InitialState, data));
        Assert.Equal(~expected, Crc32C.Compute(data));
    }

    [Fact]
    public void Striped_append_continues_from_a_running_state()
    {
        var data = new byte[50_000];
        new Random(9).NextBytes(data);
        uint state = Crc32C.AppendStriped(Crc32C.InitialState, data.AsSpan(0, 17));
        state = Crc32C.AppendStriped(state, data.AsSpan(17));
        Assert.Equal(~Crc32CReference.Register(Crc32C.InitialState, data), Crc32C.Complete(state));
    }
}
