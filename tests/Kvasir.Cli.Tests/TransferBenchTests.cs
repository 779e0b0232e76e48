using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Kvasir.Protocol;
using Kvasir.Protocol.Transfer;
using Kvasir.Transfer;

namespace Kvasir.Cli.Tests;

/// <summary>
/// <c>kvasir transfer-bench</c> across two real processes on 127.0.0.1: a <c>--listen</c> target and a
/// <c>--connect</c> initiator, whose writes the target checks by CRC and whose reads bring the target's pattern back.
/// </summary>
public partial class TransferBenchTests
{
    [GeneratedRegex(@"^transfer-bench: listening on 127\.0\.0\.1:(\d+), a region of (\d+) bytes")]
    private static partial Regex ListeningLine();

    [Fact]
    public async Task An_initiator_in_another_process_writes_and_reads_a_listening_target_and_checks_the_bytes()
    {
        using var target = Cli.Start(["transfer-bench", "--listen", "0", "--sizes", "64KiB,1MiB", "--inflight", "2"]);
        try
        {
            string first = await ReadLineWithinAsync(target.StandardOutput, "the target's listening line");
            var m = ListeningLine().Match(first);
            Assert.True(m.Success, $"unexpected first line: {first}");
            Assert.Equal(2 << 20, long.Parse(m.Groups[2].Value));   // max(--sizes) x --inflight
            var drain = target.StandardOutput.ReadToEndAsync();
            string at = $"127.0.0.1:{m.Groups[1].Value}";

            foreach (string op in new[] { "write", "read" })
            {
                var r = await Cli.RunAsync("transfer-bench", "--connect", at, "--op", op, "--sizes", "64KiB,1MiB", "--inflight", "2",
                    "--lanes", "1,2", "--duration", "0.1", "--min-iterations", "3", "--json");
                Assert.True(r.ExitCode == 0, r.ToString());
                var cells = r.OutLines.Select(l => JsonNode.Parse(l)!).ToArray();
                Assert.Equal([(65536L, 1), (1L << 20, 1), (65536L, 2), (1L << 20, 2)],
                    cells.Select(c => ((long)c["size"]!, (int)c["lanes"]!)).ToArray());
                Assert.All(cells, c => Assert.Equal(op, (string)c["op"]!));
                Assert.All(cells, c => Assert.True((int)c["n"]! >= 3 && (double)c["gib_s_wall"]! > 0, c.ToJsonString()));
                Assert.All(cells, c => Assert.Null(c["tcp_gib_s"]));
            }

            // A window beyond the target's region is refused with the fix, and the target serves on.
            var tooLarge = await Cli.RunAsync("transfer-bench", "--connect", at, "--sizes", "4MiB", "--lanes", "1", "--duration", "0.1");
            Assert.Equal(2, tooLarge.ExitCode);
            Assert.Contains($"{at}: [0, 0+4194304) is outside this target's region of 2097152 bytes: start --listen with the initiator's --sizes and --inflight",
                Assert.Single(tooLarge.ErrLines));
            var again = await Cli.RunAsync("transfer-bench", "--connect", at, "--sizes", "64KiB", "--lanes", "1", "--duration", "0.1", "--json");
            Assert.True(again.ExitCode == 0, again.ToString());

            await StopAsync(target);
            Assert.Equal(6, Regex.Count(await drain, @"^transfer-bench: connection \d+ from 127\.0\.0\.1:\d+$", RegexOptions.Multiline));
        }
        finally { Cli.KillIfRunning(target); }
    }

    [Fact]
    public async Task A_write_run_leaves_bytes_the_target_did_not_hold_so_its_crc_check_can_fail_and_a_read_after_it_checks_out()
    {
        // The target starts with the bench's pattern. A write run must leave other bytes in it: writes of the bytes it
        // already held would pass the CRC check whether or not they landed. (Before: the initiator wrote the pattern.)
        using var target = Cli.Start(["transfer-bench", "--listen", "0", "--sizes", "64KiB", "--region-memory", "managed"]);
        try
        {
            int port = await ListeningPortAsync(target);
            var drain = target.StandardOutput.ReadToEndAsync();
            using var pattern = BenchMemory.Allocate("managed", 64 << 10);
            pattern.FillPattern();
            uint initial = await TargetChecksumAsync(port, 0, 64 << 10);
            Assert.Equal(Crc32C.Compute(pattern.Span(0, 64 << 10)), initial);

            foreach (string op in new[] { "write", "read", "write" })
            {
                var r = await Cli.RunAsync("transfer-bench", "--connect", $"127.0.0.1:{port}", "--op", op, "--sizes", "64KiB", "--lanes", "1",
                    "--duration", "0.1", "--min-iterations", "3", "--json");
                Assert.True(r.ExitCode == 0, r.ToString());   // a read checks what the writes before it left, not the pattern
            }
            uint written = await TargetChecksumAsync(port, 0, 64 << 10);
            Assert.NotEqual(initial, written);

            await StopAsync(target);
            await drain;
        }
        finally { Cli.KillIfRunning(target); }
    }

    [Fact]
    public async Task A_peer_that_never_acknowledges_an_answer_neither_holds_up_other_initiators_nor_the_targets_sigterm()
    {
        // A raw lane joins the target, asks once and then reads nothing: the target's answer is never acknowledged, so
        // its send waits out the engine's 30 s transfer timeout. (Before: the target awaited each answer in turn, so the
        // initiator below got nothing for those 30 s and timed out, and SIGTERM waited as long.)
        using var target = Cli.Start(["transfer-bench", "--listen", "0", "--sizes", "64KiB", "--region-memory", "managed"]);
        try
        {
            int port = await ListeningPortAsync(target);
            var drain = target.StandardOutput.ReadToEndAsync();
            using var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await stalled.ConnectAsync("127.0.0.1", port);
            var hello = new byte[TransferHelloRequest.Size];
            new TransferHelloRequest(1, 0, 1, RandomId(), RandomId(), RandomId()).Write(hello);
            await SendFrameAsync(stalled, TransferFrameHeader.Request(TransferOpcode.Hello, 1, hello.Length), hello);
            var reply = new byte[TransferLimits.HeaderSize + TransferHelloReply.Size];
            using (var cts = new CancellationTokenSource(Cli.Deadline))
            using (var stream = new NetworkStream(stalled, ownsSocket: false)) await stream.ReadExactlyAsync(reply, cts.Token);
            Assert.Equal(TransferStatus.Ok, TransferFrameHeader.Read(reply).Status);
            await SendFrameAsync(stalled, TransferFrameHeader.Request(TransferOpcode.Notify, 2, 17), Request((byte)'C', 0, 4096));

            var r = await Cli.RunAsync("transfer-bench", "--connect", $"127.0.0.1:{port}", "--sizes", "64KiB", "--lanes", "1",
                "--duration", "0.1", "--min-iterations", "3", "--json");
            Assert.True(r.ExitCode == 0, r.ToString());

            await StopAsync(target);
            await drain;
        }
        finally { Cli.KillIfRunning(target); }
    }

    [Fact]
    public async Task An_initiator_whose_target_is_gone_or_dies_mid_run_says_so_in_one_line_and_exits_3()
    {
        // (Before: an unhandled TransferException, a stack trace and exit 134.)
        var none = await Cli.RunAsync("transfer-bench", "--connect", "127.0.0.1:1", "--sizes", "64KiB", "--lanes", "1", "--duration", "0.1");
        Assert.True(none.ExitCode == 3, none.ToString());
        Assert.StartsWith("kvasir transfer-bench: 127.0.0.1:1: ", Assert.Single(none.ErrLines));

        using var target = Cli.Start(["transfer-bench", "--listen", "0", "--sizes", "64KiB", "--region-memory", "managed"]);
        using var initiator = Cli.Start(["transfer-bench", "--connect", $"127.0.0.1:{await ListeningPortAsync(target)}", "--sizes", "64KiB",
            "--lanes", "1", "--duration", "60"]);
        try
        {
            var errors = initiator.StandardError.ReadToEndAsync();
            Assert.StartsWith("op ", await ReadLineWithinAsync(initiator.StandardOutput, "the initiator's header"));   // measuring now
            target.Kill();
            using var exit = new CancellationTokenSource(Cli.Deadline);
            try { await initiator.WaitForExitAsync(exit.Token); }
            catch (OperationCanceledException) { Assert.Fail("the initiator went on after its target died"); }
            string err = await errors;
            Assert.True(initiator.ExitCode == 3, $"exit {initiator.ExitCode}: {err}");
            Assert.StartsWith("kvasir transfer-bench: 127.0.0.1:", Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        }
        finally
        {
            Cli.KillIfRunning(initiator);
            Cli.KillIfRunning(target);
        }
    }

    private static UInt128 RandomId() => BinaryPrimitives.ReadUInt128LittleEndian(RandomNumberGenerator.GetBytes(16));

    private static async Task SendFrameAsync(Socket socket, TransferFrameHeader header, byte[] meta)
    {
        var frame = new byte[TransferLimits.HeaderSize + meta.Length];
        header.Write(frame);
        meta.CopyTo(frame, TransferLimits.HeaderSize);
        await socket.SendAsync(frame);
    }

    /// <summary>A transfer-bench request: kind, offset, length (TransferBenchPeer's layout).</summary>
    private static byte[] Request(byte kind, long offset, long length)
    {
        var request = new byte[17];
        request[0] = kind;
        BinaryPrimitives.WriteInt64LittleEndian(request.AsSpan(1), offset);
        BinaryPrimitives.WriteInt64LittleEndian(request.AsSpan(9), length);
        return request;
    }

    /// <summary>Asks a listening target, from an engine of this process, for the CRC-32C of its region's bytes [offset, offset+length).</summary>
    private static async Task<uint> TargetChecksumAsync(int port, long offset, long length)
    {
        using var engine = TransferEngine.Start();
        int conn = await engine.ConnectAsync("127.0.0.1", port);
        var request = Request((byte)'C', offset, length);
        await engine.SendNotificationAsync(conn, request);
        using var cts = new CancellationTokenSource(Cli.Deadline);
        while (true)
        {
            await engine.WaitForNotificationsAsync(cts.Token);
            foreach (var note in engine.GetNotifications())
                if (note.Bytes.Length == 21 && note.Bytes.AsSpan(0, 17).SequenceEqual(request)) return BinaryPrimitives.ReadUInt32LittleEndian(note.Bytes.AsSpan(17));
        }
    }

    private static async Task<int> ListeningPortAsync(System.Diagnostics.Process target)
    {
        string first = await ReadLineWithinAsync(target.StandardOutput, "the target's listening line");
        var m = ListeningLine().Match(first);
        Assert.True(m.Success, $"unexpected first line: {first}");
        return int.Parse(m.Groups[1].Value);
    }

    [Theory]
    [InlineData(new[] { "--listen", "0", "--connect", "127.0.0.1:1" }, "--listen and --connect exclude each other")]
    [InlineData(new[] { "--connect", "127.0.0.1:1", "--tcp-baseline" }, "--tcp-baseline runs in one process")]
    [InlineData(new[] { "--connect", "127.0.0.1" }, "--connect: '127.0.0.1' is not HOST:PORT (port 1..65535)")]
    [InlineData(new[] { "--connect", "127.0.0.1:0" }, "--connect: '127.0.0.1:0' is not HOST:PORT (port 1..65535)")]
    [InlineData(new[] { "--listen", "70000" }, "--listen: '70000' is not [HOST:]PORT (port 0: any free port)")]
    public async Task Two_process_options_that_cannot_work_are_refused_with_the_reason(string[] args, string message)
    {
        var r = await Cli.RunAsync(["transfer-bench", .. args]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(message, Assert.Single(r.ErrLines));
    }

    [Theory]
    [InlineData("write")]
    [InlineData("read")]
    public async Task An_armed_check_fails_until_the_bytes_moved_and_passes_once_they_did(string op)
    {
        // One process: both regions start with the pattern, as source and --listen target do. (Before: a read in one
        // process compared a source never cleared with a destination copied from it, which could not fail.)
        const int Size = 300_000;
        using var source = BenchMemory.Allocate("managed", Size);
        using var destination = BenchMemory.Allocate("managed", Size);
        source.FillPattern();
        destination.FillPattern();
        var check = new TransferBenchCheck(source, (offset, length) => Task.FromResult(Crc32C.Compute(destination.Span(offset, length))));
        for (int cell = 0; cell < 300; cell++)   // more cells than seeds: the seed wraps and still differs from the last
        {
            await check.ArmAsync(Size);
            Assert.False(await check.HoldsAsync(Size), $"cell {cell}: the check passes with nothing moved");
            if (op == "write") source.Span(0, Size).CopyTo(destination.Span(0, Size));
            else destination.Span(0, Size).CopyTo(source.Span(0, Size));
            Assert.True(await check.HoldsAsync(Size), $"cell {cell}");
        }
        destination.Span(Size - 1, 1)[0] ^= 1;   // one changed byte is seen
        Assert.False(await check.HoldsAsync(Size));
    }

    [Fact]
    public void Two_pattern_seeds_differ_at_every_byte_and_seed_0_is_the_targets_pattern()
    {
        const int Size = 70_000;   // more than one tile of the pattern
        using var a = BenchMemory.Allocate("managed", Size);
        using var b = BenchMemory.Allocate("managed", Size);
        a.FillPattern();
        for (int i = 0; i < Size; i++) Assert.Equal((byte)(i * 131 % 251), a.Span(i, 1)[0]);
        a.FillPattern(1000, 60_000, 7);
        b.FillPattern(1000, 60_000, 8);
        for (int i = 1000; i < 61_000; i++) Assert.NotEqual(a.Span(i, 1)[0], b.Span(i, 1)[0]);
        Assert.Equal((byte)((1000L * 131 + 7) % 251), a.Span(1000, 1)[0]);
        Assert.Equal((byte)(999 * 131 % 251), a.Span(999, 1)[0]);   // nothing before the range changed
    }

    /// <summary>SIGTERM to a <c>--listen</c> target, which must exit 0 within the CLI deadline.</summary>
    private static async Task StopAsync(Process target)
    {
        Cli.SendSigterm(target);
        using var exit = new CancellationTokenSource(Cli.Deadline);
        try { await target.WaitForExitAsync(exit.Token); }
        catch (OperationCanceledException) { Assert.Fail($"the target did not stop within {Cli.Deadline.TotalSeconds:0} s of SIGTERM"); }
        Assert.Equal(0, target.ExitCode);
    }

    private static async Task<string> ReadLineWithinAsync(StreamReader reader, string what)
    {
        using var cts = new CancellationTokenSource(Cli.Deadline);
        try { return await reader.ReadLineAsync(cts.Token) ?? throw new Xunit.Sdk.XunitException($"stream ended before {what}"); }
        catch (OperationCanceledException) { throw new Xunit.Sdk.XunitException($"no {what} within {Cli.Deadline.TotalSeconds:0} s"); }
    }
}
