using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

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

            Cli.SendSigterm(target);
            using var exit = new CancellationTokenSource(Cli.Deadline);
            await target.WaitForExitAsync(exit.Token);
            Assert.Equal(0, target.ExitCode);
            Assert.Equal(6, Regex.Count(await drain, @"^transfer-bench: connection \d+ from 127\.0\.0\.1:\d+$", RegexOptions.Multiline));
        }
        finally { Cli.KillIfRunning(target); }
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

    [Fact]
    public void The_pattern_check_sees_one_changed_byte()
    {
        using var memory = BenchMemory.Allocate("managed", 3 << 20);
        memory.FillPattern();
        Assert.True(memory.HoldsPattern(0, 3 << 20));
        Assert.True(memory.HoldsPattern(1 << 20, 1 << 20));
        memory.Span((2 << 20) + 7, 1)[0] ^= 1;
        Assert.False(memory.HoldsPattern(0, 3 << 20));
        Assert.True(memory.HoldsPattern(0, 2 << 20));
    }

    private static async Task<string> ReadLineWithinAsync(StreamReader reader, string what)
    {
        using var cts = new CancellationTokenSource(Cli.Deadline);
        try { return await reader.ReadLineAsync(cts.Token) ?? throw new Xunit.Sdk.XunitException($"stream ended before {what}"); }
        catch (OperationCanceledException) { throw new Xunit.Sdk.XunitException($"no {what} within {Cli.Deadline.TotalSeconds:0} s"); }
    }
}
