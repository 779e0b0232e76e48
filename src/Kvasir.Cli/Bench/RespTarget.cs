namespace Kvasir.Cli.Bench;

/// <summary>
/// Redis (RESP2) as a benchmark peer, driven the way Kvasir's own client drives Kvasir: one TCP connection,
/// one <c>MSET</c> per put batch, one <c>MGET</c> per get batch, pipelined <c>EXISTS</c>, value bytes sent
/// from and received into the caller's memory. Verification of the values is the caller's job.
/// </summary>
/// <remarks>
/// Server-side errors never throw: an <c>-ERR</c> reply fails the command's keys and leaves the connection
/// usable; a protocol violation, closed socket or timeout fails the keys and poisons the connection, after
/// which every call answers all-error without touching the network. Not thread-safe (one lane, one call at a time).
/// </remarks>
public sealed class RespTarget : IBenchTarget
{
    public string Transport => "redis";

    private readonly RawProtocolConnection _connection;

    private RespTarget(RawProtocolConnection connection) => _connection = connection;

    /// <summary>Connects to a Redis server. Connection failures throw.</summary>
    public static async Task<RespTarget> ConnectAsync(string host, int port, CancellationToken ct = default) =>
        new(await RawProtocolConnection.ConnectAsync(host, port, ct).ConfigureAwait(false));

    /// <inheritdoc cref="RawProtocolConnection.OperationTimeout"/>
    public TimeSpan OperationTimeout
    {
        get => _connection.OperationTimeout;
        set => _connection.OperationTimeout = value;
    }

    /// <summary>True once the connection has failed; every later call reports errors.</summary>
    public bool IsBroken => _connection.IsBroken;

    /// <summary>One <c>MSET k1 v1 ... kn vn</c>: all keys succeed (<c>+OK</c>) or all fail.</summary>
    public async Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        if (keys.Count != values.Count) throw new ArgumentException("keys and values differ in count", nameof(values));
        int n = keys.Count;
        if (n == 0) return 0;
        if (_connection.IsBroken) return n;

        var c = _connection;
        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            WriteArrayHeader(c, 1 + 2 * n);
            c.Write("$4\r\nMSET\r\n"u8);
            for (int i = 0; i < n; i++)
            {
                WriteBulk(c, keys[i]);
                WriteBulk(c, values[i]);
            }
            send = c.SendRequestAsync(ct);
            await c.ReadLineAsync(ct).ConfigureAwait(false);
            var line = c.Line;
            bool ok = line.SequenceEqual("+OK"u8);
            if (!ok && (line.IsEmpty || line[0] != '-')) throw new IOException("protocol: unexpected MSET reply");
            if (!await send.ConfigureAwait(false)) return n;
            return ok ? 0 : n;
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

    /// <summary>One <c>MGET k1 ... kn</c>; each bulk string goes straight into its destination.</summary>
    public async Task GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths)
    {
        if (!_connection.ReadyForGet(keys, destinations, lengths)) return;
        int n = keys.Count;

        var c = _connection;
        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            WriteArrayHeader(c, 1 + n);
            c.Write("$4\r\nMGET\r\n"u8);
            for (int i = 0; i < n; i++) WriteBulk(c, keys[i]);
            send = c.SendRequestAsync(ct);

            await c.ReadLineAsync(ct).ConfigureAwait(false);
            var head = c.Line;
            if (head.Length > 0 && head[0] == '-')
            {
                lengths.AsSpan(0, n).Fill(IBenchTarget.Error);
                return;
            }
            if (head.Length < 2 || head[0] != '*' || RawProtocolConnection.ParseInteger(head[1..]) != n)
                throw new IOException("protocol: MGET reply is not an array of one element per key");

            for (int i = 0; i < n; i++)
            {
                await c.ReadLineAsync(ct).ConfigureAwait(false);
                var line = c.Line;
                if (line.Length < 2 || line[0] != '$') throw new IOException("protocol: MGET element is not a bulk string");
                long length = RawProtocolConnection.ParseInteger(line[1..]);
                if (length == -1)
                {
                    lengths[i] = IBenchTarget.Miss;
                    continue;
                }
                if (length < 0) throw new IOException("protocol: negative bulk length");
                lengths[i] = await c.ReadValueAsync(destinations[i], length, ct).ConfigureAwait(false);
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

    /// <summary>n pipelined <c>EXISTS k</c>; an <c>-ERR</c> reply is −1 for that key only.</summary>
    public async Task ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present)
    {
        if (!_connection.ReadyForExists(keys, present)) return;
        int n = keys.Count;

        var c = _connection;
        var ct = c.BeginOperation();
        Task<bool>? send = null;
        try
        {
            for (int i = 0; i < n; i++)
            {
                c.Write("*2\r\n$6\r\nEXISTS\r\n"u8);
                WriteBulk(c, keys[i]);
            }
            send = c.SendRequestAsync(ct);
            for (int i = 0; i < n; i++)
            {
                await c.ReadLineAsync(ct).ConfigureAwait(false);
                var line = c.Line;
                if (line.Length > 0 && line[0] == '-') present[i] = -1;
                else if (line.Length >= 2 && line[0] == ':') present[i] = RawProtocolConnection.ParseInteger(line[1..]) > 0 ? 1 : 0;
                else throw new IOException("protocol: EXISTS reply is not an integer");
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

    private static void WriteArrayHeader(RawProtocolConnection c, int count)
    {
        c.Write("*"u8);
        c.WriteDecimal(count);
        c.Write("\r\n"u8);
    }

    private static void WriteBulk(RawProtocolConnection c, ReadOnlyMemory<byte> data)
    {
        c.Write("$"u8);
        c.WriteDecimal(data.Length);
        c.Write("\r\n"u8);
        c.WriteData(data);
        c.Write("\r\n"u8);
    }
}
