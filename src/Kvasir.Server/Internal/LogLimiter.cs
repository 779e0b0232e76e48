using Microsoft.Extensions.Logging;

namespace Kvasir.Server.Internal;

/// <summary>
/// Rate limit for a warning that a client can make the node repeat (refused connections, cut connections): at most
/// <paramref name="perWindow"/> lines per <paramref name="window"/>; the first line after a quiet spell says how many
/// were suppressed, so the log keeps the count without a client filling the disk.
/// </summary>
internal sealed class LogLimiter(TimeSpan window, int perWindow = 10)
{
    private readonly Lock _lock = new();
    private long _windowStart = long.MinValue;
    private int _written;
    private long _suppressed;

    public void Warn(ILogger log, string message)
    {
        long suppressed;
        lock (_lock)
        {
            long now = Environment.TickCount64;
            if (now - _windowStart >= (long)window.TotalMilliseconds)
            {
                _windowStart = now;
                _written = 0;
            }
            if (_written >= perWindow)
            {
                _suppressed++;
                return;
            }
            _written++;
            suppressed = _suppressed;
            _suppressed = 0;
        }
        if (suppressed == 0) log.LogWarning("{Message}", message);
        else log.LogWarning("{Message} ({Suppressed} similar lines suppressed)", message, suppressed);
    }
}
