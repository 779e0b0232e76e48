using Kvasir.Client.Internal;

namespace Kvasir.Client.Tests;

/// <summary>
/// <see cref="OpenBackoff"/> on a clock the test moves: what the striping tests against a refusing node cannot reach in
/// their time (the doubling to its cap, a probe that never answers).
/// </summary>
public sealed class OpenBackoffTests
{
    private long _now = 5_000;

    private OpenBackoff Backoff() => new(() => _now);

    [Fact]
    public void Nothing_is_held_back_until_a_refusal_and_an_opening_ends_the_wait()
    {
        var b = Backoff();
        Assert.False(b.Holding);
        Assert.False(b.TryHoldBack(out bool probe));
        Assert.False(probe);
        b.Refused(probe: false);
        Assert.True(b.Holding);
        Assert.True(b.TryHoldBack(out probe));
        _now += OpenBackoff.FirstWindowMs - 1;
        Assert.True(b.TryHoldBack(out _));
        b.Opened();
        Assert.False(b.Holding);
        Assert.False(b.TryHoldBack(out probe));
        Assert.False(probe);
    }

    [Fact]
    public void After_a_window_one_caller_probes_while_the_others_wait_and_each_refused_probe_doubles_the_wait_up_to_its_cap()
    {
        var b = Backoff();
        b.Refused(probe: false);
        b.Refused(probe: false);   // openings under way when the wait began: not longer
        var windows = new List<long>();
        long window = OpenBackoff.FirstWindowMs;
        for (int round = 0; round < 8; round++)
        {
            _now += window - 1;
            Assert.True(b.TryHoldBack(out _), $"round {round}: let through before its wait of {window} ms passed");
            _now += 1;
            Assert.False(b.Holding, $"round {round}: still holding once its wait of {window} ms passed");
            Assert.False(b.TryHoldBack(out bool probe));
            Assert.True(probe, $"round {round}: the first caller after the wait is not the probe");
            Assert.True(b.TryHoldBack(out bool other), $"round {round}: a second caller went beside the probe");
            Assert.False(other);
            Assert.True(b.Holding);
            b.Refused(probe: true);
            windows.Add(window);
            window = Math.Min(2 * window, OpenBackoff.LongestWindowMs);
        }
        Assert.Equal([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000], windows);
    }

    [Fact]
    public void A_probe_that_ends_without_an_answer_lets_the_next_caller_probe()
    {
        var b = Backoff();
        b.Refused(probe: false);
        _now += OpenBackoff.FirstWindowMs;
        Assert.False(b.TryHoldBack(out bool probe));
        Assert.True(probe);
        Assert.True(b.TryHoldBack(out _));   // the probe is out
        b.Abandoned();                       // cancelled, or the node could not be reached at all
        Assert.False(b.TryHoldBack(out probe));
        Assert.True(probe);
        b.Opened();
        Assert.False(b.Holding);
    }
}
