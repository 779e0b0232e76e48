using System.Buffers.Binary;
using System.Text;
using Kvasir.Protocol;
using Kvasir.Transfer;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir transfer-bench</c> across two processes or hosts. <c>--listen</c> runs the target: one engine and one
/// region that answers initiators over the engine's own notifications; <c>--connect</c> runs the bench's cells from
/// another process against it. Each request and answer is one notification:
/// <list type="bullet">
/// <item><c>'A'</c> offset length (little-endian int64s) → <c>'A'</c> offset length and the advertisement of that
/// window of the target's region for the asking connection;</item>
/// <item><c>'C'</c> offset length → <c>'C'</c> offset length and the CRC-32C of those region bytes (how the initiator
/// checks what its writes left there);</item>
/// <item>an error is <c>'E'</c> and one line of UTF-8 text.</item>
/// </list>
/// The target's region holds <see cref="BenchMemory.FillPattern()"/>'s bytes when it starts; an initiator checks its
/// writes and reads by the CRC-32C of a window (<see cref="TransferBenchCheck"/>).
/// </summary>
internal static class TransferBenchPeer
{
    private const byte AdvertiseRequest = (byte)'A', ChecksumRequest = (byte)'C', ErrorReply = (byte)'E';
    private const int RequestLength = 17;

    /// <summary>How long the initiator waits for one answer.</summary>
    public static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Serves until <paramref name="ct"/> is cancelled (Ctrl-C, SIGTERM).</summary>
    public static async Task<int> ServeAsync(string host, int port, long regionBytes, string memoryKind, int? socketBuffer, CancellationToken ct)
    {
        using var region = BenchMemory.Allocate(memoryKind, regionBytes);
        region.FillPattern();
        using var engine = TransferEngine.Start(new TransferEngineOptions { Host = host, Port = port, SocketBufferBytes = socketBuffer });
        int regionId = region.Register(engine);
        Console.WriteLine($"transfer-bench: listening on {host}:{engine.Port}, a region of {regionBytes} bytes; Ctrl-C stops");
        Console.Out.Flush();
        var accepting = AcceptAllAsync(engine, ct);
        while (!ct.IsCancellationRequested)
        {
            try { await engine.WaitForNotificationsAsync(ct); }
            catch (OperationCanceledException) { break; }
            // Not awaited one after another: an answer completes only when the initiator acknowledges it, and one that
            // never does (a stopped process, a dead link) must hold up neither the others' answers nor a Ctrl-C for the
            // engine's transfer timeout. Each initiator asks one thing at a time, so the order of answers is its own.
            foreach (var note in engine.GetNotifications()) _ = AnswerAsync(engine, region, regionId, note, ct);
        }
        await accepting;
        return 0;
    }

    private static async Task AnswerAsync(TransferEngine engine, BenchMemory region, int regionId, TransferNotification note, CancellationToken ct)
    {
        try { await engine.SendNotificationAsync(note.ConnId, Answer(engine, region, regionId, note)); }
        catch (Exception e) when (e is TransferException or InvalidOperationException or ArgumentException or ObjectDisposedException)
        {
            if (!ct.IsCancellationRequested) Console.Error.WriteLine($"transfer-bench: connection {note.ConnId}: {e.Message}");
        }
    }

    private static async Task AcceptAllAsync(TransferEngine engine, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var c = await engine.AcceptAsync(ct);
                Console.WriteLine($"transfer-bench: connection {c.ConnId} from {c.Address}:{c.Port}");
            }
            catch (OperationCanceledException) { return; }
        }
    }

    private static byte[] Answer(TransferEngine engine, BenchMemory region, int regionId, TransferNotification note)
    {
        var request = note.Bytes;
        if (request.Length != RequestLength || request[0] is not (AdvertiseRequest or ChecksumRequest))
            return Error($"not a transfer-bench request ({request.Length} bytes): is the initiator a kvasir transfer-bench --connect?");
        long offset = BinaryPrimitives.ReadInt64LittleEndian(request.AsSpan(1)), length = BinaryPrimitives.ReadInt64LittleEndian(request.AsSpan(9));
        if (offset < 0 || length <= 0 || length > int.MaxValue || offset > region.Length - length)
            return Error($"[{offset}, {offset}+{length}) is outside this target's region of {region.Length} bytes: "
                + "start --listen with the initiator's --sizes and --inflight");
        byte[] body = request[0] == AdvertiseRequest
            ? engine.Advertise(note.ConnId, regionId, offset, length)
            : BitConverter.GetBytes(Crc32C.Compute(region.Span(offset, (int)length)));
        return [.. request, .. body];
    }

    private static byte[] Error(string message) => [ErrorReply, .. Encoding.UTF8.GetBytes(message)];

    /// <summary>The initiator's side: asks the target of connection <paramref name="conn"/> for windows and checksums.</summary>
    public sealed class Remote(TransferEngine engine, int conn, string target)
    {
        public Task<byte[]> AdvertiseAsync(long offset, long length) => AskAsync(AdvertiseRequest, offset, length);

        public async Task<uint> ChecksumAsync(long offset, long length) => BinaryPrimitives.ReadUInt32LittleEndian(await AskAsync(ChecksumRequest, offset, length));

        private async Task<byte[]> AskAsync(byte kind, long offset, long length)
        {
            var request = new byte[RequestLength];
            request[0] = kind;
            BinaryPrimitives.WriteInt64LittleEndian(request.AsSpan(1), offset);
            BinaryPrimitives.WriteInt64LittleEndian(request.AsSpan(9), length);
            await engine.SendNotificationAsync(conn, request);
            using var deadline = new CancellationTokenSource(AnswerTimeout);
            while (true)
            {
                try { await engine.WaitForNotificationsAsync(deadline.Token); }
                catch (OperationCanceledException) { throw new TimeoutException($"{target} did not answer within {AnswerTimeout.TotalSeconds:0} s"); }
                foreach (var note in engine.GetNotifications())
                {
                    var answer = note.Bytes;
                    if (note.ConnId != conn || answer.Length == 0) continue;
                    if (answer[0] == ErrorReply) throw new UsageException($"{target}: {Encoding.UTF8.GetString(answer.AsSpan(1))}");
                    if (answer.Length >= RequestLength && answer.AsSpan(0, RequestLength).SequenceEqual(request)) return answer[RequestLength..];
                }
            }
        }
    }
}
