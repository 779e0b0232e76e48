using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Kvasir.Transfer;

namespace Kvasir.Cli;

/// <summary>
/// <c>kvasir transfer-peer</c>: the scripted interop peer of docs/transfer.md § Interop peer, the same
/// as Python's <c>python -m kvasir.transfer.peer</c>, so each language's tests drive the other's engine
/// in a separate process. It prints one JSON line per event on stdout and acts on the driver's notifications.
/// </summary>
public static class TransferPeerCommand
{
    public const string Help = """
        kvasir transfer-peer [options]   the scripted transfer engine peer of docs/transfer.md (interop tests)

          --host ADDR           listen address or interface name          default 127.0.0.1
          --port N              listen port (0 = ephemeral)               default 0
          --auth-key HEX64      require this auth key                     default none
          --ncpus N             worker threads per connection             default 1
          --nconn-per-cpu N     lanes per worker                          default 2
          --slice-bytes N       slice size and max_slice                  default 1048576
          --region-bytes N      the region advertised to the driver       default 16777216
          --timeout SEC         transfer timeout                          default 30

        Prints {"event": "listening", "port": P, "metadata": HEX}, accepts one connection ({"event": "accepted",
        "conn_id": N}), advertises its zero-filled region with the NOTIFY "advert:" + blob, then acts on the
        driver's notifications: sha:OFF:LEN, fill:LEN:SEED| + blob, read:LEN| + blob, kv-echo:MAX,
        layers:TAG:SEED:GROUPS:LEN, bye.
        Any other notification, or any failure, prints {"event": "error", "message": ...} and exits 1.
        """;

    private static readonly string[] ValueOptions = ["host", "port", "auth-key", "ncpus", "nconn-per-cpu", "slice-bytes", "region-bytes", "timeout"];

    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        var cl = CommandLine.Parse(args, ValueOptions, []);
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        long regionBytes = cl.Size("region-bytes", 16 << 20);
        if (regionBytes is < 1 or > int.MaxValue) throw new UsageException("--region-bytes must be 1 B..2 GiB");
        double timeout = cl.Double("timeout", 30);
        if (timeout <= 0) throw new UsageException("--timeout must be positive");
        var options = new TransferEngineOptions
        {
            Host = cl.Get("host", "127.0.0.1"),
            Port = cl.Int("port", 0, 0, 65535),
            AuthKey = cl.Get("auth-key"),
            Ncpus = cl.Int("ncpus", 1, 1, 64),
            NconnPerCpu = cl.Int("nconn-per-cpu", 2, 1, 64),
            SliceBytes = checked((int)cl.Size("slice-bytes", 1 << 20)),
            TransferTimeout = TimeSpan.FromSeconds(timeout),
        };
        try
        {
            using var engine = TransferEngine.Start(options);
            Emit(new JsonObject { ["event"] = "listening", ["port"] = engine.Port, ["metadata"] = Convert.ToHexStringLower(engine.GetMetadata()) });
            var accepted = await engine.AcceptAsync();
            int conn = accepted.ConnId;
            Emit(new JsonObject { ["event"] = "accepted", ["conn_id"] = conn });
            var region = new byte[regionBytes];
            int regionId = engine.Register(region);
            var blob = engine.Advertise(conn, regionId, 0, region.Length);
            await engine.SendNotificationAsync(conn, (byte[])[.. "advert:"u8, .. blob]);
            await ServeAsync(engine, conn, region, regionId);
            Emit(new JsonObject { ["event"] = "bye" });
            return 0;
        }
        catch (Exception e) when (e is TransferException or IOException or InvalidOperationException or ArgumentException or OverflowException)
        {
            Emit(new JsonObject { ["event"] = "error", ["message"] = e.Message });
            return 1;
        }
    }

    /// <summary>Acts on the driver's notifications until "bye"; the connection closing first is an error.</summary>
    private static async Task ServeAsync(TransferEngine engine, int conn, byte[] region, int regionId)
    {
        while (true)
        {
            foreach (var n in engine.GetNotifications())
            {
                var bytes = n.Bytes;
                int bar = Array.IndexOf(bytes, (byte)'|');
                string text = Encoding.UTF8.GetString(bytes, 0, bar < 0 ? bytes.Length : bar);
                var blob = bar < 0 ? Memory<byte>.Empty : bytes.AsMemory(bar + 1);
                var parts = text.Split(':');
                switch (parts[0])
                {
                    case "bye":
                        return;
                    case "sha" when parts.Length == 3:
                        long off = Number(parts[1], text), len = Number(parts[2], text);
                        if (off > region.Length || len > region.Length - off) throw new TransferException(TransferError.InvalidArgument, $"{text}: outside the region of {region.Length} bytes");
                        await SendShaAsync(engine, conn, region.AsMemory((int)off, (int)len));
                        break;
                    case "fill" when parts.Length == 3:
                        long fill = Number(parts[1], text), seed = Number(parts[2], text);
                        CheckLength(fill, region, text);
                        for (int i = 0; i < fill; i++) region[i] = (byte)((i * 131L + seed) % 251);
                        await engine.WriteAsync(conn, regionId, 0, fill, blob, Encoding.UTF8.GetBytes($"filled:{fill}"));
                        break;
                    case "read" when parts.Length == 2:
                        long read = Number(parts[1], text);
                        CheckLength(read, region, text);
                        await engine.ReadAsync(conn, regionId, 0, read, blob);
                        await SendShaAsync(engine, conn, region.AsMemory(0, (int)read));
                        break;
                    case "kv-echo" when parts.Length == 2:
                        long max = Number(parts[1], text);
                        if (max is < 1 or > int.MaxValue) throw new TransferException(TransferError.InvalidArgument, $"{text}: MAX must be 1 B..2 GiB");
                        var inbox = new byte[max];
                        var outbox = new byte[max];
                        int t = await engine.RegisterKvAsync(conn, inbox);
                        int t1 = await engine.RegisterKvAsync(conn, outbox);
                        long got = await engine.RecvKvAsync(t, max);
                        await engine.SendKvAsync(t1, inbox.AsMemory(0, (int)got));
                        break;
                    case "layers" when parts.Length == 5:   // per-layer pull: fill each group, then announce it (last group first)
                        long tag = Number(parts[1], text), layerSeed = Number(parts[2], text), groups = Number(parts[3], text), size = Number(parts[4], text);
                        if (tag < 1 || groups < 1 || size < 1 || groups > region.Length / size)
                            throw new TransferException(TransferError.InvalidArgument, $"'{text}': {groups} groups of {size} bytes do not fit the region of {region.Length} bytes (or tag 0)");
                        for (long g = groups - 1; g >= 0; g--)
                        {
                            for (long i = g * size; i < (g + 1) * size; i++) region[i] = (byte)((i * 131L + layerSeed) % 251);
                            await engine.NotifyLayerReadyAsync(conn, (ulong)tag, (int)g);
                        }
                        break;
                    default:
                        throw new TransferException(TransferError.InvalidArgument, $"unknown notification '{text[..Math.Min(text.Length, 40)]}'");
                }
            }
            if (!engine.Connections.Contains(conn))
                throw new TransferException(TransferError.ConnectionLost, $"connection {conn} closed before 'bye'");
            try { await engine.WaitForNotificationsAsync().WaitAsync(TimeSpan.FromMilliseconds(200)); }
            catch (TimeoutException) { }
        }
    }

    private static void CheckLength(long length, byte[] region, string command)
    {
        if (length < 1 || length > region.Length)
            throw new TransferException(TransferError.InvalidArgument, $"'{command}': length {length} is outside 1..{region.Length} (the region)");
    }

    private static Task SendShaAsync(TransferEngine engine, int conn, ReadOnlyMemory<byte> bytes) =>
        engine.SendNotificationAsync(conn, Encoding.UTF8.GetBytes("sha:" + Convert.ToHexStringLower(SHA256.HashData(bytes.Span))));

    private static long Number(string text, string command) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
            ? n
            : throw new TransferException(TransferError.InvalidArgument, $"'{command}': '{text}' is not a whole number");

    private static void Emit(JsonObject line) => Console.Out.WriteLine(line.ToJsonString());
}
