using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Kvasir.Cli.Bench;
using Kvasir.Net;

namespace Kvasir.Cli.Tests;

/// <summary>A real redis-server or memcached process on 127.0.0.1 and a free port, killed by pid on dispose.</summary>
public sealed class PeerServer : IDisposable
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(15);
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    public string Kind { get; }
    public int Port { get; }
    public int Pid => _process.Id;

    private PeerServer(string kind, int port, Process process)
    {
        Kind = kind;
        Port = port;
        _process = process;
        _process.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>Starts <paramref name="kind"/> ("redis" or "memcached") on a free port; retries when the port was taken meanwhile.</summary>
    public static PeerServer Start(string kind)
    {
        string binary = kind switch
        {
            "redis" => Find("redis-server"),
            "memcached" => Find("memcached"),
            _ => throw new ArgumentException(kind, nameof(kind)),
        };
        var failures = new StringBuilder();
        for (int attempt = 0; attempt < 5; attempt++)
        {
            int port = FreePort();
            var psi = new ProcessStartInfo(binary)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = Path.GetTempPath(),
            };
            foreach (var a in Arguments(kind, port)) psi.ArgumentList.Add(a);
            var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {binary}");
            var server = new PeerServer(kind, port, process);
            if (server.WaitUntilAccepting()) return server;
            failures.AppendLine($"attempt {attempt + 1} on port {port}: {server.Log}");
            server.Dispose();
        }
        throw new InvalidOperationException($"{kind} did not start accepting connections within {StartDeadline.TotalSeconds} s:\n{failures}");
    }

    private static IEnumerable<string> Arguments(string kind, int port) => kind == "redis"
        ? ["--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"]
        // -u only matters when running as root, which memcached otherwise refuses.
        : ["-l", "127.0.0.1", "-p", port.ToString(), "-U", "0", "-m", "256", "-I", "8m", "-t", "2", "-u", Environment.UserName];

    private static string Find(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Prepend("/usr/bin").Append("/usr/sbin"))
        {
            if (dir.Length == 0) continue;
            var path = Path.Combine(dir, name);
            if (File.Exists(path)) return path;
        }
        throw new InvalidOperationException($"{name} is not installed (looked in /usr/bin and PATH); run ./test.sh, which installs redis-server and memcached");
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private bool WaitUntilAccepting()
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartDeadline)
        {
            if (_process.HasExited) return false;
            try
            {
                using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Connect(IPAddress.Loopback, Port);
                return true;
            }
            catch (SocketException)
            {
                Thread.Sleep(20);
            }
        }
        return false;
    }

    public async Task<IBenchTarget> ConnectAsync() => Kind == "redis"
        ? await RespTarget.ConnectAsync("127.0.0.1", Port)
        : await MemcachedTarget.ConnectAsync("127.0.0.1", Port);

    /// <summary>Sends signal <paramref name="signal"/> (e.g. STOP, CONT) to the server by pid.</summary>
    public void Signal(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, Pid.ToString()]) { UseShellExecute = false })!;
        Assert.True(kill.WaitForExit(5000), $"kill -{signal} {Pid} did not finish");
        Assert.Equal(0, kill.ExitCode);
        // kill(2) returns before the target has stopped: wait until /proc says it has (state T), or
        // a request sent right after could still be served.
        if (signal == "STOP")
        {
            Poll.Until(() => ProcState() == 'T', $"/proc/{Pid}/stat to show the stopped state T after kill -STOP", TimeSpan.FromSeconds(5));
        }
    }

    private char ProcState()
    {
        // /proc/PID/stat: "pid (comm) S ...": the state follows the last ')'.
        var stat = File.ReadAllText($"/proc/{Pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited) _process.Kill();
        }
        catch (InvalidOperationException) { } // already gone
        Assert.True(_process.WaitForExit(10_000), $"{Kind} (pid {Pid}) did not exit after kill");
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}

/// <summary>One redis-server and one memcached shared by the tests of a class (each test uses its own keys).</summary>
public sealed class PeerServersFixture : IDisposable
{
    private readonly PeerServer _redis;
    private readonly PeerServer _memcached;

    public PeerServersFixture()
    {
        _redis = PeerServer.Start("redis");
        try
        {
            _memcached = PeerServer.Start("memcached");
        }
        catch
        {
            _redis.Dispose();
            throw;
        }
    }

    public PeerServer this[string kind] => kind == "redis" ? _redis : _memcached;

    public void Dispose()
    {
        _redis.Dispose();
        _memcached.Dispose();
    }
}

public class PeerTargetTests(PeerServersFixture servers) : IClassFixture<PeerServersFixture>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public static TheoryData<string> Kinds => new() { "redis", "memcached" };

    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..12] + ":";

    private ReadOnlyMemory<byte> Key(string name) => Encoding.ASCII.GetBytes(_prefix + name);

    private static async Task<long[]> Get(IBenchTarget target, ReadOnlyMemory<byte>[] keys, Memory<byte>[] destinations)
    {
        var lengths = new long[keys.Length];
        Array.Fill(lengths, long.MinValue);
        await target.GetAsync(keys, destinations, lengths).WaitAsync(Bound);
        return lengths;
    }

    private static async Task<int[]> Exists(IBenchTarget target, params ReadOnlyMemory<byte>[] keys)
    {
        var present = new int[keys.Length];
        Array.Fill(present, int.MinValue);
        await target.ExistsAsync(keys, present).WaitAsync(Bound);
        return present;
    }

    private static void SetTimeout(IBenchTarget target, TimeSpan timeout)
    {
        if (target is RespTarget r) r.OperationTimeout = timeout;
        else ((MemcachedTarget)target).OperationTimeout = timeout;
    }

    private static bool IsBroken(IBenchTarget target) => target is RespTarget r ? r.IsBroken : ((MemcachedTarget)target).IsBroken;

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Values_of_0_1_100_64KiB_1MiB_and_4MiB_round_trip_byte_exact_in_one_batch(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        int[] sizes = [0, 1, 100, 64 << 10, (64 << 10) - 1, (64 << 10) + 1, 1 << 20, 4 << 20];
        var keys = sizes.Select((s, i) => Key($"size{i}")).ToArray();
        var values = sizes.Select((s, i) => TestValues.Value(i, s)).ToArray();
        Assert.Equal(0, await target.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()).WaitAsync(Bound));

        var destinations = sizes.Select(s => new byte[s + 7]).ToArray();
        var lengths = await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray());
        for (int i = 0; i < sizes.Length; i++)
        {
            Assert.Equal(sizes[i], lengths[i]);
            Assert.True(values[i].AsSpan().SequenceEqual(destinations[i].AsSpan(0, sizes[i])), $"value {i} ({sizes[i]} bytes) differs");
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_batch_of_hits_and_misses_reports_each_key_by_its_position(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        var keys = Enumerable.Range(0, 8).Select(i => Key($"mix{i}")).ToArray();
        var stored = new[] { 0, 3, 4, 7 };
        Assert.Equal(0, await target.PutAsync(stored.Select(i => keys[i]).ToArray(), stored.Select(i => (ReadOnlyMemory<byte>)TestValues.Value(i, 1000 + i)).ToArray()).WaitAsync(Bound));

        var destinations = keys.Select(_ => new byte[4096]).ToArray();
        var lengths = await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray());
        for (int i = 0; i < keys.Length; i++)
        {
            if (stored.Contains(i))
            {
                Assert.Equal(1000 + i, lengths[i]);
                Assert.True(TestValues.Value(i, 1000 + i).AsSpan().SequenceEqual(destinations[i].AsSpan(0, 1000 + i)));
            }
            else
            {
                Assert.Equal(IBenchTarget.Miss, lengths[i]);
            }
        }
        // Only misses: the batch still completes.
        Assert.All(await Get(target, [Key("none1"), Key("none2")], [new byte[8], new byte[8]]), l => Assert.Equal(IBenchTarget.Miss, l));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_key_repeated_in_a_batch_fills_every_occurrence_and_the_last_put_wins(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        var a = Key("a");
        var b = Key("b");
        var first = TestValues.Value(1, 300);
        var last = TestValues.Value(2, 200_000);
        Assert.Equal(0, await target.PutAsync([a, b, a], [first, TestValues.Value(3, 5), last]).WaitAsync(Bound));

        ReadOnlyMemory<byte>[] keys = [a, Key("missing"), a, b, Key("missing"), a];
        var destinations = keys.Select(_ => new byte[256 << 10]).ToArray();
        var lengths = await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray());
        Assert.Equal(new long[] { last.Length, IBenchTarget.Miss, last.Length, 5, IBenchTarget.Miss, last.Length }, lengths);
        foreach (int i in new[] { 0, 2, 5 })
            Assert.True(last.AsSpan().SequenceEqual(destinations[i].AsSpan(0, last.Length)), $"occurrence at {i} differs");
        Assert.True(TestValues.Value(3, 5).AsSpan().SequenceEqual(destinations[3].AsSpan(0, 5)));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Exists_reports_1_for_present_and_0_for_missing_keys(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        Assert.Equal(0, await target.PutAsync([Key("here"), Key("big")], [TestValues.Value(1, 10), TestValues.Value(2, 2 << 20)]).WaitAsync(Bound));
        Assert.Equal(new int[] { 1, 0, 1, 1, 0 }, await Exists(target, Key("here"), Key("gone"), Key("big"), Key("here"), Key("gone2")));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_destination_too_small_is_an_error_for_that_key_and_the_following_keys_and_calls_are_still_correct(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        var big = TestValues.Value(1, 1 << 20);      // skipped through several buffer fills
        var medium = TestValues.Value(2, 100_000);
        var small = TestValues.Value(3, 50);         // skipped from inside the buffer
        ReadOnlyMemory<byte>[] keys = [Key("big"), Key("medium"), Key("small"), Key("after")];
        Assert.Equal(0, await target.PutAsync(keys, [big, medium, small, TestValues.Value(4, 70)]).WaitAsync(Bound));

        var destinations = new[] { new byte[1000], new byte[100_000], new byte[49], new byte[70] };
        var lengths = await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray());
        Assert.Equal(new long[] { IBenchTarget.Error, 100_000, IBenchTarget.Error, 70 }, lengths);
        Assert.True(medium.AsSpan().SequenceEqual(destinations[1]));
        Assert.True(TestValues.Value(4, 70).AsSpan().SequenceEqual(destinations[3]));

        // The connection is still in step: the next call on it reads the right values.
        var again = new[] { new byte[1 << 20], new byte[50] };
        Assert.Equal(new long[] { 1 << 20, 50 }, await Get(target, [keys[0], keys[2]], [again[0], again[1]]));
        Assert.True(big.AsSpan().SequenceEqual(again[0]));
        Assert.True(small.AsSpan().SequenceEqual(again[1]));
        Assert.False(IsBroken(target));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_large_pipelined_batch_of_many_values_above_and_below_the_coalesce_limit_round_trips(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        const int n = 1500; // > 512 gathered buffers per send, several MB in one request
        var keys = Enumerable.Range(0, n).Select(i => Key($"many{i}")).ToArray();
        var values = Enumerable.Range(0, n).Select(i => TestValues.Value(i, i % 3 == 0 ? RawProtocolConnectionLimits.Coalesce + 1 + i : 100 + i % 50)).ToArray();
        Assert.Equal(0, await target.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()).WaitAsync(Bound));

        var destinations = values.Select(v => new byte[v.Length]).ToArray();
        var lengths = await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray());
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(values[i].Length, lengths[i]);
            Assert.True(values[i].AsSpan().SequenceEqual(destinations[i]), $"value {i} differs");
        }
        Assert.All(await Exists(target, keys), p => Assert.Equal(1, p));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Values_sent_from_and_received_into_native_memory_round_trip(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        int[] sizes = [10, 20_000, 3 << 20];
        var sources = sizes.Select(s => Marshal.AllocHGlobal(s)).ToArray();
        var sinks = sizes.Select(s => Marshal.AllocHGlobal(s)).ToArray();
        try
        {
            var values = new ReadOnlyMemory<byte>[sizes.Length];
            var destinations = new Memory<byte>[sizes.Length];
            for (int i = 0; i < sizes.Length; i++)
            {
                values[i] = new NativeMemoryManager(sources[i], sizes[i]).Memory;
                destinations[i] = new NativeMemoryManager(sinks[i], sizes[i]).Memory;
                TestValues.Value(i, sizes[i]).CopyTo(MemoryMarshal.AsMemory(values[i]).Span);
            }
            var keys = sizes.Select((_, i) => Key($"native{i}")).ToArray();
            Assert.Equal(0, await target.PutAsync(keys, values).WaitAsync(Bound));
            var lengths = await Get(target, keys, destinations);
            for (int i = 0; i < sizes.Length; i++)
            {
                Assert.Equal(sizes[i], lengths[i]);
                Assert.True(values[i].Span.SequenceEqual(destinations[i].Span), $"value {i} differs");
            }
        }
        finally
        {
            foreach (var p in sources.Concat(sinks)) Marshal.FreeHGlobal(p);
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task An_empty_batch_is_a_no_op(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        Assert.Equal(0, await target.PutAsync([], []).WaitAsync(Bound));
        await target.GetAsync([], [], []).WaitAsync(Bound);
        await target.ExistsAsync([], []).WaitAsync(Bound);
        Assert.Equal(new int[] { 1 }, await Exists(target, await PutOne(target, Key("after-empty"))));
    }

    private static async Task<ReadOnlyMemory<byte>> PutOne(IBenchTarget target, ReadOnlyMemory<byte> key)
    {
        Assert.Equal(0, await target.PutAsync([key], [TestValues.Value(0, 3)]).WaitAsync(Bound));
        return key;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Mismatched_argument_counts_are_programming_errors_that_throw(string kind)
    {
        await using var target = await servers[kind].ConnectAsync();
        await Assert.ThrowsAsync<ArgumentException>(() => target.PutAsync([Key("x")], []));
        await Assert.ThrowsAsync<ArgumentException>(() => target.GetAsync([Key("x")], [], new long[1]));
        await Assert.ThrowsAsync<ArgumentException>(() => target.ExistsAsync([Key("x")], []));
        Assert.False(IsBroken(target));
    }

    [Fact]
    public async Task Memcached_refuses_a_value_over_its_item_size_limit_as_one_failed_put_and_the_connection_keeps_working()
    {
        await using var target = await servers["memcached"].ConnectAsync();
        var huge = TestValues.Value(1, 9 << 20); // server runs with -I 8m
        var small = TestValues.Value(2, 100);
        var after = TestValues.Value(3, 1 << 20);
        ReadOnlyMemory<byte>[] keys = [Key("before"), Key("huge"), Key("after")];
        Assert.Equal(1, await target.PutAsync(keys, [small, huge, after]).WaitAsync(Bound));
        Assert.False(IsBroken(target));

        var destinations = new[] { new byte[100], new byte[9 << 20], new byte[1 << 20] };
        Assert.Equal(new long[] { 100, IBenchTarget.Miss, 1 << 20 }, await Get(target, keys, destinations.Select(d => (Memory<byte>)d).ToArray()));
        Assert.True(small.AsSpan().SequenceEqual(destinations[0]));
        Assert.True(after.AsSpan().SequenceEqual(destinations[2]));
        Assert.Equal(new int[] { 1, 0, 1 }, await Exists(target, keys));
    }

    [Fact]
    public async Task Memcached_keys_with_spaces_control_characters_or_over_250_bytes_are_errors_for_that_key_only()
    {
        await using var target = await servers["memcached"].ConnectAsync();
        ReadOnlyMemory<byte>[] keys =
        [
            Key("ok1"), Key("has space"), Key("has\r\nnewline"), Encoding.ASCII.GetBytes(new string('k', 251)),
            ReadOnlyMemory<byte>.Empty, Encoding.ASCII.GetBytes(new string('k', 250)), Key("ok2"),
        ];
        var values = keys.Select((_, i) => (ReadOnlyMemory<byte>)TestValues.Value(i, 10 + i)).ToArray();
        Assert.Equal(4, await target.PutAsync(keys, values).WaitAsync(Bound));

        var destinations = keys.Select(_ => (Memory<byte>)new byte[64]).ToArray();
        var lengths = await Get(target, keys, destinations);
        Assert.Equal(new long[] { 10, IBenchTarget.Error, IBenchTarget.Error, IBenchTarget.Error, IBenchTarget.Error, 15, 16 }, lengths);
        Assert.Equal(new int[] { 1, -1, -1, -1, -1, 1, 1 }, await Exists(target, keys));
        Assert.False(IsBroken(target));
    }

    [Fact]
    public async Task Redis_refusing_a_put_with_an_error_reply_fails_every_key_and_the_connection_keeps_working()
    {
        using var server = PeerServer.Start("redis");
        await using var target = await server.ConnectAsync();
        var key = Key("kept");
        Assert.Equal(0, await target.PutAsync([key], [TestValues.Value(1, 100)]).WaitAsync(Bound));

        // maxmemory 1 byte with noeviction: every write is answered with -OOM.
        using (var admin = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await admin.ConnectAsync(IPAddress.Loopback, server.Port).WaitAsync(Bound);
            await admin.SendAsync("*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$9\r\nmaxmemory\r\n$1\r\n1\r\n*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n"u8.ToArray()).WaitAsync(Bound);
            var reply = new byte[64];
            int got = 0;
            while (got < 10) got += await admin.ReceiveAsync(reply.AsMemory(got)).AsTask().WaitAsync(Bound);
            Assert.Equal("+OK\r\n+OK\r\n", Encoding.ASCII.GetString(reply, 0, got));
        }

        Assert.Equal(2, await target.PutAsync([Key("x"), Key("y")], [TestValues.Value(2, 10), TestValues.Value(3, 100_000)]).WaitAsync(Bound));
        Assert.False(IsBroken(target));
        var destination = new byte[100];
        Assert.Equal(new long[] { 100, IBenchTarget.Miss }, await Get(target, [key, Key("y")], [destination, new byte[100_000]]));
        Assert.True(TestValues.Value(1, 100).AsSpan().SequenceEqual(destination));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_killed_server_turns_every_later_call_into_errors_not_exceptions(string kind)
    {
        using var server = PeerServer.Start(kind);
        await using var target = await server.ConnectAsync();
        ReadOnlyMemory<byte>[] keys = [Key("k1"), Key("k2")];
        Assert.Equal(0, await target.PutAsync(keys, [TestValues.Value(1, 10), TestValues.Value(2, 1 << 20)]).WaitAsync(Bound));

        server.Kill();

        var lengths = await Get(target, keys, [new byte[10], new byte[1 << 20]]);
        Assert.Equal(new long[] { IBenchTarget.Error, IBenchTarget.Error }, lengths);
        Assert.True(IsBroken(target));
        Assert.Equal(2, await target.PutAsync(keys, [TestValues.Value(1, 10), TestValues.Value(2, 1 << 20)]).WaitAsync(Bound));
        Assert.Equal(new int[] { -1, -1 }, await Exists(target, keys));
        Assert.Equal(new long[] { IBenchTarget.Error, IBenchTarget.Error }, await Get(target, keys, [new byte[10], new byte[1 << 20]]));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_server_killed_during_a_large_get_ends_it_with_errors_or_complete_values_never_an_exception(string kind)
    {
        using var server = PeerServer.Start(kind);
        await using var target = await server.ConnectAsync();
        const int n = 16, size = 4 << 20;
        var keys = Enumerable.Range(0, n).Select(i => Key($"big{i}")).ToArray();
        var value = TestValues.Value(7, size);
        Assert.Equal(0, await target.PutAsync(keys, keys.Select(_ => (ReadOnlyMemory<byte>)value).ToArray()).WaitAsync(Bound));

        var destinations = keys.Select(_ => new byte[size]).ToArray();
        var lengths = new long[n];
        var get = target.GetAsync(keys, destinations.Select(d => (Memory<byte>)d).ToArray(), lengths);
        server.Kill();
        await get.WaitAsync(Bound);

        bool allComplete = lengths.All(l => l == size);
        Assert.True(allComplete || lengths.All(l => l == IBenchTarget.Error), $"lengths: {string.Join(", ", lengths)}");
        if (allComplete) Assert.All(destinations, d => Assert.True(value.AsSpan().SequenceEqual(d)));
        // Whatever the first call saw, the server is gone now.
        Assert.Equal(new int[] { -1 }, await Exists(target, keys[0]));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_stalled_server_is_cut_off_by_the_operation_timeout_with_errors(string kind)
    {
        using var server = PeerServer.Start(kind);
        await using var target = await server.ConnectAsync();
        var key = Key("stall");
        Assert.Equal(0, await target.PutAsync([key], [TestValues.Value(1, 10)]).WaitAsync(Bound));

        // Short only once the server is stopped: on a busy machine a healthy call can take longer than this.
        SetTimeout(target, TimeSpan.FromMilliseconds(300));
        server.Signal("STOP");
        try
        {
            var watch = Stopwatch.StartNew();
            Assert.Equal(new long[] { IBenchTarget.Error }, await Get(target, [key], [new byte[10]]));
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"timeout took {watch.Elapsed}");
            Assert.True(IsBroken(target));
            // A stalled peer that never reads: a put larger than the socket buffers must time out too.
            Assert.Equal(1, await new Func<Task<int>>(async () =>
            {
                await using var other = await server.ConnectAsync();
                SetTimeout(other, TimeSpan.FromMilliseconds(300));
                return await other.PutAsync([key], [TestValues.Value(2, 32 << 20)]);
            })().WaitAsync(Bound));
        }
        finally
        {
            server.Signal("CONT");
        }
    }
}

internal static class RawProtocolConnectionLimits
{
    /// <summary>Mirror of the client's coalesce limit (8 KiB), so tests cross it on purpose.</summary>
    public const int Coalesce = 8 * 1024;
}
