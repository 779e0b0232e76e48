using System.Diagnostics;
using Xunit;

namespace Kvasir.TestSupport;

/// <summary>
/// The one way a test waits for state: poll a condition until it holds or a deadline passes, then fail
/// the test saying what was awaited. Never sleep for a fixed time and hope the state has arrived.
/// </summary>
public static class Poll
{
    /// <summary>The deadline when a call does not give one: 10 s, generous for a loaded 2-core CI machine.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(10);

    /// <summary>Polls <paramref name="condition"/> every 10 ms until it holds; fails with <paramref name="awaited"/> after <paramref name="timeout"/>.</summary>
    public static Task UntilAsync(Func<bool> condition, string awaited, TimeSpan? timeout = null) =>
        UntilAsync(() => Task.FromResult(condition()), () => awaited, timeout);

    /// <summary>As above, with a message built at the deadline (so it can report the state the test gave up on).</summary>
    public static Task UntilAsync(Func<bool> condition, Func<string> awaited, TimeSpan? timeout = null) =>
        UntilAsync(() => Task.FromResult(condition()), awaited, timeout);

    /// <summary>As above, for a condition that must itself await (a STATS request, a registry read).</summary>
    public static Task UntilAsync(Func<Task<bool>> condition, string awaited, TimeSpan? timeout = null) =>
        UntilAsync(condition, () => awaited, timeout);

    /// <summary>Polls an awaitable condition until it holds; an exception from the condition fails the test at once.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, Func<string> awaited, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > limit) Assert.Fail(TimedOut(limit, awaited()));
            await Task.Delay(Interval);
        }
    }

    /// <summary>
    /// Blocking form, for code that cannot await (a callback, a clock reading, a storage test with no
    /// async path). Polls every 1 ms; fails with <paramref name="awaited"/> after <paramref name="timeout"/>.
    /// </summary>
    public static void Until(Func<bool> condition, string awaited, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit) Assert.Fail(TimedOut(limit, awaited));
            Thread.Sleep(1);
        }
    }

    private static string TimedOut(TimeSpan limit, string awaited) => $"timed out after {limit.TotalSeconds:0.###} s waiting for: {awaited}";
}
