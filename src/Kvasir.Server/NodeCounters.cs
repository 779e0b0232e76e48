using Kvasir.Protocol;

namespace Kvasir.Server;

/// <summary>How a value's bytes crossed between a client and the node.</summary>
public enum NodeTransport
{
    /// <summary>In the frames of a socket (TCP, with or without TLS).</summary>
    Tcp,
    /// <summary>Through the shared-memory arena (ALLOC/COMMIT, LEASE): the client copies, the node counts.</summary>
    Shm,
    /// <summary>A node embedded in the client's process.</summary>
    InProcess,
}

/// <summary>Node-wide counters, updated with interlocked adds from every connection.</summary>
public sealed class NodeCounters
{
    private readonly long[] _requests = new long[256];
    private readonly long[] _keys = new long[256];
    private readonly long[] _opBytesIn = new long[256];
    private readonly long[] _opBytesOut = new long[256];
    private const int Transports = 3;
    private readonly long[] _valueIn = new long[Transports * 256];
    private readonly long[] _valueOut = new long[Transports * 256];
    private long _bytesIn, _bytesOut, _connections, _connectionsTotal, _connectionsRefused, _protocolErrors, _authFailures;
    private long _requestsInFlightPeak;

    public long BytesIn => Volatile.Read(ref _bytesIn);
    public long BytesOut => Volatile.Read(ref _bytesOut);
    public long Connections => Volatile.Read(ref _connections);
    public long ConnectionsTotal => Volatile.Read(ref _connectionsTotal);
    /// <summary>Connections closed at accept: over the node's or one address's connection limit.</summary>
    public long ConnectionsRefused => Volatile.Read(ref _connectionsRefused);
    public long ProtocolErrors => Volatile.Read(ref _protocolErrors);

    /// <summary>Since the node started, the most requests one connection has had received (header read) whose replies the
    /// writer had not yet started to send: 1 for a client that waits for each reply, more for one that pipelines.</summary>
    public long RequestsInFlightPeak => Volatile.Read(ref _requestsInFlightPeak);

    /// <summary>A connection has <paramref name="inFlight"/> requests received and not yet being answered.</summary>
    internal void InFlight(long inFlight)
    {
        long peak = Volatile.Read(ref _requestsInFlightPeak);
        while (inFlight > peak)
        {
            long seen = Interlocked.CompareExchange(ref _requestsInFlightPeak, inFlight, peak);
            if (seen == peak) return;
            peak = seen;
        }
    }
    public long AuthFailures => Volatile.Read(ref _authFailures);

    public long Requests(Opcode op) => Volatile.Read(ref _requests[(byte)op]);
    public long Keys(Opcode op) => Volatile.Read(ref _keys[(byte)op]);

    /// <summary>Bytes received in frames of this opcode: header, metadata and (PUT, COMMIT) values.</summary>
    public long BytesInOf(Opcode op) => Volatile.Read(ref _opBytesIn[(byte)op]);

    /// <summary>Bytes sent in replies to this opcode: header, metadata and (GET) values.</summary>
    public long BytesOutOf(Opcode op) => Volatile.Read(ref _opBytesOut[(byte)op]);

    /// <summary>Value bytes stored through this transport by requests of this opcode (PUT, COMMIT).</summary>
    public long ValueBytesIn(NodeTransport transport, Opcode op) => Volatile.Read(ref _valueIn[(int)transport * 256 + (byte)op]);

    /// <summary>Value bytes read through this transport by requests of this opcode (GET, LEASE).</summary>
    public long ValueBytesOut(NodeTransport transport, Opcode op) => Volatile.Read(ref _valueOut[(int)transport * 256 + (byte)op]);

    /// <summary>A value's bytes went into the store through <paramref name="transport"/> (also the in-process node's way to count).</summary>
    public void ValueIn(NodeTransport transport, Opcode op, long bytes) => Interlocked.Add(ref _valueIn[(int)transport * 256 + (byte)op], bytes);

    /// <summary>A value's bytes went out of the store through <paramref name="transport"/>.</summary>
    public void ValueOut(NodeTransport transport, Opcode op, long bytes) => Interlocked.Add(ref _valueOut[(int)transport * 256 + (byte)op], bytes);

    /// <summary>Where request durations and per-key counts also go (set by the node).</summary>
    internal Admin.NodeMetrics? Metrics { get; set; }

    public void Request(Opcode op, int keys)
    {
        Interlocked.Increment(ref _requests[(byte)op]);
        Interlocked.Add(ref _keys[(byte)op], keys);
    }

    internal void In(Opcode op, long bytes)
    {
        Interlocked.Add(ref _bytesIn, bytes);
        Interlocked.Add(ref _opBytesIn[(byte)op], bytes);
    }

    internal void Out(Opcode op, long bytes)
    {
        Interlocked.Add(ref _bytesOut, bytes);
        Interlocked.Add(ref _opBytesOut[(byte)op], bytes);
    }
    internal void Opened() { Interlocked.Increment(ref _connections); Interlocked.Increment(ref _connectionsTotal); }
    internal void Closed() => Interlocked.Decrement(ref _connections);
    internal void Refused() => Interlocked.Increment(ref _connectionsRefused);
    internal void ProtocolError() => Interlocked.Increment(ref _protocolErrors);
    internal void AuthFailure() => Interlocked.Increment(ref _authFailures);
}
