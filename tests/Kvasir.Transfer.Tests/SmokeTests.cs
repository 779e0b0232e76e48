namespace Kvasir.Transfer.Tests;

public sealed class SmokeTests
{
    [Fact]
    public async Task A_write_lands_byte_exact_in_the_advertised_window()
    {
        using var pair = await EnginePair.StartAsync();
        var src = Bytes.Pattern(3 << 20, 7);
        var dst = new byte[3 << 20];
        int srcRegion = pair.Initiator.Register(src);
        int dstRegion = pair.Target.Register(dst);
        var blob = pair.Target.Advertise(pair.TargetConnId, dstRegion, 0, dst.Length);
        await pair.Initiator.WriteAsync(pair.ConnId, srcRegion, 0, src.Length, blob).WaitAsync(EnginePair.Deadline);
        Assert.Equal(src, dst);
    }
}
