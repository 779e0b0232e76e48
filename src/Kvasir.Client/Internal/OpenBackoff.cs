namespace Kvasir.Client.Internal;

/// <summary>
/// Holds a transport back from opening more connections to a node that refused one while another of its connections
/// still serves. A node at <c>--max-connections</c> or <c>--max-connections-per-address</c> closes each further
/// connection at HELLO; without this, every striped batch and every request that found the open connections busy asked
/// again (three refusals a batch of a 4-connection store, for as long as the client ran: a handshake, an accept and a
/// warning on the node each time). After a refusal no connection is opened for a window of 1 s, doubling at each refused
/// probe up to 30 s; when a window has passed, one caller probes and the others stay on the open connections until it has
/// its answer; a connection opened resets it. A transport with no connection open is never held back (the node may have
/// restarted, and opening is the only way to find out), so this applies only while <c>TcpTransport.AnyOpen</c> has one.
/// </summary>
internal sealed class OpenBackoff(Func<long>? clockMs = null)
{
    internal const int FirstWindowMs = 1_000;
    internal const int LongestWindowMs = 30_000;

    private readonly Func<long> _now = clockMs ?? (static () => Environment.TickCount64);
    private readonly object _gate = new();
    private long _until;      // the clock (ms) before which nothing is opened; 0: no refusal since the last opening
    private int _windowMs;
    private bool _probing;    // one caller is trying again after a window passed

    /// <summary>Whether a caller would be held back now (no side effect): a refusal's window has not passed, or a probe is out.</summary>
    public bool Holding
    {
        get
        {
            if (Volatile.Read(ref _until) == 0) return false;
            lock (_gate) return _until != 0 && (_probing || _now() < _until);
        }
    }

    /// <summary>
    /// Whether to skip opening a connection now. False when nothing was refused, or when the window has passed and this
    /// caller is the one to probe: it must then call <see cref="Opened"/>, <see cref="Refused"/> or <see cref="Abandoned"/>.
    /// </summary>
    public bool TryHoldBack(out bool probe)
    {
        probe = false;
        if (Volatile.Read(ref _until) == 0) return false;
        lock (_gate)
        {
            if (_until == 0) return false;
            if (_probing || _now() < _until) return true;
            _probing = probe = true;
            return false;
        }
    }

    /// <summary>A connection was opened: nothing is held back any more.</summary>
    public void Opened()
    {
        lock (_gate) (_until, _windowMs, _probing) = (0, 0, false);
    }

    /// <summary>
    /// The node refused a connection while another served. Starts the first window, or, for a refused probe, one twice as
    /// long; refusals of openings that were already under way when the window began do not lengthen it.
    /// </summary>
    public void Refused(bool probe)
    {
        lock (_gate)
        {
            long now = _now();
            if (!probe && _until != 0 && now < _until) return;
            _windowMs = _windowMs == 0 ? FirstWindowMs : Math.Min(2 * _windowMs, LongestWindowMs);
            _until = now + _windowMs;
            if (probe) _probing = false;
        }
    }

    /// <summary>A probe ended without an answer (cancelled, or the node could not be reached at all): the next caller probes.</summary>
    public void Abandoned()
    {
        lock (_gate) _probing = false;
    }
}
