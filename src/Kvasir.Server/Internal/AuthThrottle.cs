using System.Net;

namespace Kvasir.Server.Internal;

/// <summary>
/// Backoff after failed AUTH attempts, per client address: once an address has failed, every AUTH from it waits
/// 100 ms, doubling with each further failure up to 5 s, before it is checked (a correct proof waits too, so the
/// delay says nothing about the proof). An address is forgotten a minute after its last failure. A guessing client
/// then gets a few attempts per second per connection instead of thousands, and fills neither the log nor the CPU.
/// </summary>
internal sealed class AuthThrottle
{
    private static readonly TimeSpan First = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan Longest = TimeSpan.FromSeconds(5);
    private const long ForgetAfterMs = 60_000;
    private const int MaxTracked = 10_000;

    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, (int Failures, long LastMs)> _failures = [];

    /// <summary>How long an AUTH from <paramref name="address"/> waits before it is checked.</summary>
    public TimeSpan DelayFor(IPAddress address)
    {
        lock (_lock)
        {
            if (!_failures.TryGetValue(address, out var f)) return TimeSpan.Zero;
            if (Environment.TickCount64 - f.LastMs > ForgetAfterMs)
            {
                _failures.Remove(address);
                return TimeSpan.Zero;
            }
            double ms = First.TotalMilliseconds * Math.Pow(2, Math.Min(f.Failures - 1, 16));
            return TimeSpan.FromMilliseconds(Math.Min(ms, Longest.TotalMilliseconds));
        }
    }

    /// <summary>Counts a failed AUTH from <paramref name="address"/>.</summary>
    public void Failed(IPAddress address)
    {
        lock (_lock)
        {
            long now = Environment.TickCount64;
            if (_failures.Count >= MaxTracked && !_failures.ContainsKey(address))
            {
                foreach (var (a, f) in _failures)
                    if (now - f.LastMs > ForgetAfterMs) _failures.Remove(a);
                if (_failures.Count >= MaxTracked) _failures.Clear();   // a flood from many addresses: start over rather than grow
            }
            int failures = _failures.TryGetValue(address, out var old) && now - old.LastMs <= ForgetAfterMs ? old.Failures : 0;
            _failures[address] = (failures + 1, now);
        }
    }
}
