using System.Threading.Channels;

namespace Kvasir.Server.Admin;

/// <summary>
/// The optional access log: one line per request — UTC time, client, opcode, keys, frame status,
/// microseconds — written by a background task so a slow disk never stalls a connection (beyond
/// 100,000 queued lines, lines are dropped and counted).
/// </summary>
public sealed class AccessLog : IAsyncDisposable
{
    private readonly Channel<string> _lines = Channel.CreateBounded<string>(new BoundedChannelOptions(100_000) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly TextWriter _writer;
    private readonly bool _ownsWriter;
    private readonly Task _pump;
    private long _dropped;

    /// <summary>Opens <paramref name="path"/> for appending, or stdout for "-". Throws <see cref="IOException"/> with the reason.</summary>
    public AccessLog(string path)
    {
        if (path == "-") _writer = Console.Out;
        else
        {
            _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = false };
            _ownsWriter = true;
        }
        _pump = Task.Run(PumpAsync);
    }

    public long Dropped => Interlocked.Read(ref _dropped);

    public void Write(string remote, Kvasir.Protocol.Opcode op, int keys, string status, long micros)
    {
        var line = $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.ffffffZ} {remote} {op.ToString().ToLowerInvariant()} keys={keys} status={status} us={micros}";
        if (!_lines.Writer.TryWrite(line)) Interlocked.Increment(ref _dropped);
    }

    private async Task PumpAsync()
    {
        var reader = _lines.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var line)) await _writer.WriteLineAsync(line).ConfigureAwait(false);
            await _writer.FlushAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _lines.Writer.TryComplete();
        await _pump.ConfigureAwait(false);
        if (_ownsWriter) await _writer.DisposeAsync().ConfigureAwait(false);
    }
}
