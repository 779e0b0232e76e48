using Kvasir.Protocol;

namespace Kvasir.Server;

/// <summary>Node-wide counters, updated with interlocked adds from every connection.</summary>
public sealed class NodeCounters
{
    private readonly long[] _requests = new long[256];
    private readonly long[] _keys = new long[256];
    private readonly long[] _opBytesIn = new long[256];
    private readonly long[] _opBytesOut = new long[256];
    private long _bytesIn, _bytesOut, _connections, _connectionsTotal, _connectionsRefused, _protocolErrors, _authFailures;

    public long BytesIn => Volatile.Read(ref _bytesIn);
    public long BytesOut => Volatile.Read(ref _bytesOut);
    public long Connections => Volatile.Read(ref _connections);
    public long ConnectionsTotal => Volatile.Read(ref _connectionsTotal);
    /// <summary>Connections closed at accept: over the node's or one address's connection limit.</summary>
    public long ConnectionsRefused => Volatile.Read(ref _connectionsRefused);
    public long ProtocolErrors => Volatile.Read(ref _protocolErrors);
    public long AuthFailures => Volatile.Read(ref _authFailures);

    public long Requests(Opcode op) => Volatile.Read(ref _requests[(byte)op]);
    public long Keys(Opcode op) => Volatile.Read(ref _keys[(byte)op]);

    /// <summary>Bytes received in frames of this opcode: header, metadata and (PUT, COMMIT) values.</summary>
    public long BytesInOf(Opcode op) => Volatile.Read(ref _opBytesIn[(byte)op]);

    /// <summary>Bytes sent in replies to this opcode: header, metadata and (GET) values.</summary>
    public long BytesOutOf(Opcode op) => Volatile.Read(ref _opBytesOut[(byte)op]);

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
