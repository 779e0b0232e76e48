namespace Kvasir.Cli.Bench;

/// <summary>
/// memcached (ASCII protocol) as a benchmark peer: one TCP connection, put = pipelined <c>set</c>s in one
/// send sequence, get = one multi-key <c>get</c>, exists = pipelined meta no-op <c>mg key</c>
/// (needs memcached ≥ 1.6). Value bytes are sent from and received into the caller's memory.
/// </summary>
/// <remarks>
/// Keys must be 1–250 bytes without spaces or control characters (memcached's ASCII rules); other keys are
/// errors for that key only and are never sent. A refused <c>set</c> (<c>SERVER_ERROR object too large for
/// cache</c>, <c>NOT_STORED</c>) fails that key and leaves the connection usable: memcached swallows the value.
/// A protocol violation, <c>ERROR</c>/<c>CLIENT_ERROR</c> (the stream may be out of step), closed socket or
/// timeout poisons the connection; from then on every call answers all-error without touching the network.
/// Not thread-safe (one lane, one call at a time).
/// </remarks>
public sealed class MemcachedTarget : IBenchTarget
{
    public string Transport => "memcached";

    /// <summary>memcached's longest key.</summary>
    public const int MaxKeyLength = 250;

    private readonly RawProtocolConnection _connection;
    private readonly List<int> _sent = [];

    private MemcachedTarget(RawProtocolConnection connection) => _connection = connection;

    /// <summary>Connects to a memcached server. Connection failures throw.</summary>
    public static async Task<MemcachedTarget> ConnectAsync(string host, int port, CancellationToken ct = default) =>
        new(await RawProtocolConnection.ConnectAsync(host, port, ct).ConfigureAwait(false));

    /// <inheritdoc cref="RawProtocolConnection.OperationTimeout"/>
    public TimeSpan OperationTimeout
    {
        get => _connection.OperationTimeout;
        set => _connection.OperationTimeout = value;
    }

    /// <summary>True once the connection has failed; every later call reports errors.</summary>
    public bool IsBroken => _connection.IsBroken;

    /// <summary>True when memcached's ASCII protocol can carry <paramref name="key"/>.</summary>
    public static bool IsValidKey(ReadOnlySpan<byte> key)
    {
        if (key.IsEmpty || key.Length > MaxKeyLength) return false;
        foreach (byte b in key)
            if (b <= (byte)' ' || b == 0x7F) return false;
        return true;
    }

    /// <summary>Pipelined <c>set key 0 0 len</c>; returns how many keys were not <c>STORED</c>.</summary>
    public async Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        if (keys.Count != values.Count) throw new ArgumentException("keys and values differ in count", nameof(values));
        int n = keys.Count;
        if (n == 0) return 0;
        if (_connection.IsBroken) return n;

        var c = _connection;
        int failed = 0;
        _sent.Clear();
        for (int i = 0; i < n; i++)
        {
            if (!IsValidKey(keys[i].Span)) failed++;
            else _sent.Add(i);
        }
        if (_sent.Count == 0) return failed;

        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            foreach (int i in _sent)
            {
                c.Write("set "u8);
                c.Write(keys[i].Span);
                c.Write(" 0 0 "u8);
                c.WriteDecimal(values[i].Length);
                c.Write("\r\n"u8);
                c.WriteData(values[i]);
                c.Write("\r\n"u8);
            }
            send = c.SendRequestAsync(ct);
            for (int r = 0; r < _sent.Count; r++)
            {
                await c.ReadLineAsync(ct).ConfigureAwait(false);
                var line = c.Line;
                if (line.SequenceEqual("STORED"u8)) continue;
                if (line.StartsWith("SERVER_ERROR"u8) || line.SequenceEqual("NOT_STORED"u8)) failed++;
                else throw new IOException("protocol: unexpected set reply (stream out of step)");
            }
            if (!await send.ConfigureAwait(false)) return n;
            return failed;
        }
        catch (Exception e) when (RawProtocolConnection.IsConnectionFailure(e))
        {
            c.Poison();
            return n;
        }
        finally
        {
            if (send is not null) await send.ConfigureAwait(false);
            c.EndOperation();
        }
    }

    /// <summary>
    /// One <c>get k1 ... kn</c>. memcached answers a <c>VALUE</c> per requested key occurrence, in request order,
    /// skipping misses; each is matched to the next request position with that key, and its data goes straight
    /// into that position's destination.
    /// </summary>
    public async Task GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths)
    {
        if (!_connection.ReadyForGet(keys, destinations, lengths)) return;
        int n = keys.Count;

        var c = _connection;
        _sent.Clear();
        for (int i = 0; i < n; i++)
        {
            if (IsValidKey(keys[i].Span))
            {
                _sent.Add(i);
                lengths[i] = IBenchTarget.Miss;
            }
            else
            {
                lengths[i] = IBenchTarget.Error;
            }
        }
        if (_sent.Count == 0) return;

        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            c.Write("get"u8);
            foreach (int i in _sent)
            {
                c.Write(" "u8);
                c.Write(keys[i].Span);
            }
            c.Write("\r\n"u8);
            send = c.SendRequestAsync(ct);

            int next = 0; // position in _sent of the first request key not yet answered
            while (true)
            {
                await c.ReadLineAsync(ct).ConfigureAwait(false);
                var line = c.Line;
                if (line.SequenceEqual("END"u8)) break;
                if (!line.StartsWith("VALUE "u8)) throw new IOException("protocol: unexpected get reply");
                var rest = line[6..];
                int space = rest.IndexOf((byte)' ');
                if (space <= 0) throw new IOException("protocol: malformed VALUE line");
                var key = rest[..space];
                rest = rest[(space + 1)..];
                space = rest.IndexOf((byte)' ');
                if (space <= 0) throw new IOException("protocol: malformed VALUE line");
                rest = rest[(space + 1)..]; // skip flags
                space = rest.IndexOf((byte)' '); // an optional cas follows the length
                long length = RawProtocolConnection.ParseInteger(space < 0 ? rest : rest[..space]);
                if (length < 0) throw new IOException("protocol: negative VALUE length");

                while (next < _sent.Count && !keys[_sent[next]].Span.SequenceEqual(key)) next++;
                if (next == _sent.Count) throw new IOException("protocol: VALUE for a key not requested (or out of order)");
                int index = _sent[next++];

                lengths[index] = await c.ReadValueAsync(destinations[index], length, ct).ConfigureAwait(false);
            }
            if (!await send.ConfigureAwait(false)) lengths.AsSpan(0, n).Fill(IBenchTarget.Error);
        }
        catch (Exception e) when (RawProtocolConnection.IsConnectionFailure(e))
        {
            c.Poison();
            lengths.AsSpan(0, n).Fill(IBenchTarget.Error);
        }
        finally
        {
            if (send is not null) await send.ConfigureAwait(false);
            c.EndOperation();
        }
    }

    /// <summary>Pipelined meta no-op gets <c>mg key</c>: <c>HD</c> is present, <c>EN</c> missing.</summary>
    public async Task ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present)
    {
        if (!_connection.ReadyForExists(keys, present)) return;
        int n = keys.Count;

        var c = _connection;
        _sent.Clear();
        for (int i = 0; i < n; i++)
        {
            if (IsValidKey(keys[i].Span)) _sent.Add(i);
            else present[i] = -1;
        }
        if (_sent.Count == 0) return;

        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            foreach (int i in _sent)
            {
                c.Write("mg "u8);
                c.Write(keys[i].Span);
                c.Write("\r\n"u8);
            }
            send = c.SendRequestAsync(ct);
            foreach (int i in _sent)
            {
                await c.ReadLineAsync(ct).ConfigureAwait(false);
                var line = c.Line;
                if (line.SequenceEqual("HD"u8)) present[i] = 1;
                else if (line.SequenceEqual("EN"u8)) present[i] = 0;
                else if (line.StartsWith("SERVER_ERROR"u8)) present[i] = -1;
                else throw new IOException("protocol: unexpected mg reply (stream out of step)");
            }
            if (!await send.ConfigureAwait(false)) present.AsSpan(0, n).Fill(-1);
        }
        catch (Exception e) when (RawProtocolConnection.IsConnectionFailure(e))
        {
            c.Poison();
            present.AsSpan(0, n).Fill(-1);
        }
        finally
        {
            if (send is not null) await send.ConfigureAwait(false);
            c.EndOperation();
        }
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
