using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A real redis-server on 127.0.0.1 and a free port (./test.sh installs it), killed by pid on
/// dispose. It can be stopped and started again on the same port, to test losing Redis. Extra
/// arguments make it a TLS server, a replica or (<see cref="StartSentinel"/>) a sentinel; the
/// plain port always answers, for the readiness check and for <see cref="CommandAsync"/>.
/// </summary>
public sealed class RedisProcess : IDisposable
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan CommandDeadline = TimeSpan.FromSeconds(5);
    private readonly StringBuilder _log = new();
    private readonly string[] _extra;
    private readonly string? _configFile;
    // Its own working directory: a replica writes the RDB file it is sent there.
    private readonly string _dir = Directory.CreateTempSubdirectory("kvasir-redis-").FullName;
    private Process? _process;

    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";

    /// <summary>The TLS port of a server from <see cref="StartTls"/>; 0 otherwise.</summary>
    public int TlsPort => Array.IndexOf(_extra, "--tls-port") is >= 0 and var i ? int.Parse(_extra[i + 1]) : 0;
    public string Log { get { lock (_log) return _log.ToString(); } }

    private RedisProcess(int port, string[] extra, string? configFile) { Port = port; _extra = extra; _configFile = configFile; }

    /// <summary>A server; <paramref name="extra"/> are more redis-server arguments (TLS files, --replicaof, --requirepass …).</summary>
    public static RedisProcess Start(params string[] extra) => StartWith(() => extra, null);

    /// <summary>A server that also accepts TLS on <see cref="TlsPort"/> with the given PEM certificate and key (clients need no certificate).</summary>
    public static RedisProcess StartTls(TestCertificates files)
        => StartWith(() => ["--tls-port", FreePort().ToString(), "--tls-cert-file", files.NodeCertFile, "--tls-key-file", files.NodeKeyFile,
            "--tls-ca-cert-file", files.CaFile, "--tls-auth-clients", "no"], null);

    /// <summary>
    /// A sentinel watching <paramref name="master"/> as MASTER (quorum 1), calling it down after 1 s of
    /// silence. Its configuration file (sentinels rewrite theirs) is deleted on dispose.
    /// </summary>
    public static RedisProcess StartSentinel(RedisProcess master, string name)
    {
        var file = Path.Combine(Path.GetTempPath(), $"kvasir-sentinel-{Guid.NewGuid():N}.conf");
        File.WriteAllText(file, $"""
            sentinel monitor {name} 127.0.0.1 {master.Port} 1
            sentinel down-after-milliseconds {name} 1000
            sentinel failover-timeout {name} 5000

            """);
        try { return StartWith(() => ["--sentinel"], file); }
        catch
        {
            File.Delete(file);
            throw;
        }
    }

    private static RedisProcess StartWith(Func<string[]> extra, string? configFile)
    {
        for (int attempt = 0; ; attempt++)
        {
            int port = FreePort();
            var redis = new RedisProcess(port, extra(), configFile);
            if (redis.TryStart()) return redis;
            redis.Release(deleteConfig: false);   // StartSentinel deletes its file when every attempt failed
            if (attempt == 4) throw new InvalidOperationException($"redis-server did not start:\n{redis.Log}");
        }
    }

    /// <summary>Starts the server again on the same port, after <see cref="Kill"/>; <paramref name="more"/>: arguments added this time (--replicaof …).</summary>
    public void Restart(params string[] more)
    {
        if (!TryStart(more)) throw new InvalidOperationException($"redis-server did not restart on port {Port}:\n{Log}");
    }

    private bool TryStart(string[]? more = null)
    {
        var psi = new ProcessStartInfo(Find()) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir };
        if (_configFile is not null) psi.ArgumentList.Add(_configFile);
        var save = _configFile is null ? new[] { "--save", "", "--appendonly", "no", "--dir", _dir } : [];
        foreach (var a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1" }.Concat(save).Concat(["--protected-mode", "no", "--loglevel", "warning"]).Concat(_extra).Concat(more ?? []))
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start redis-server");
        p.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartDeadline && !p.HasExited)
        {
            try
            {
                using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Connect(IPAddress.Loopback, Port);
                s.Send("PING\r\n"u8);
                var buffer = new byte[16];
                // +PONG, or -NOAUTH from a server with a password: either way it is up.
                if (s.Receive(buffer) > 0 && buffer[0] is (byte)'+' or (byte)'-') return true;
            }
            catch (SocketException) { }
            Thread.Sleep(20);
        }
        return false;
    }

    /// <summary>
    /// Sends one command on the plain port (after AUTH with <paramref name="password"/> when given)
    /// and returns its reply flattened to text: arrays as their elements joined by spaces, errors as "-ERR …".
    /// </summary>
    public async Task<string> CommandAsync(string[] command, string? password = null)
    {
        using var cts = new CancellationTokenSource(CommandDeadline);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, Port, cts.Token);
        var stream = client.GetStream();
        var reader = new RespReader(stream);
        if (password is not null)
        {
            await stream.WriteAsync(Encode(["AUTH", password]), cts.Token);
            var auth = await reader.ReadAsync(cts.Token);
            if (auth.StartsWith('-')) return auth;
        }
        await stream.WriteAsync(Encode(command), cts.Token);
        return await reader.ReadAsync(cts.Token);
    }

    private static byte[] Encode(string[] command)
    {
        var sb = new StringBuilder($"*{command.Length}\r\n");
        foreach (var c in command) sb.Append($"${Encoding.UTF8.GetByteCount(c)}\r\n{c}\r\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private sealed class RespReader(Stream stream)
    {
        private readonly byte[] _one = new byte[1];

        public async Task<string> ReadAsync(CancellationToken ct)
        {
            var line = await LineAsync(ct);
            switch (line[0])
            {
                case '*':
                    int n = int.Parse(line[1..]);
                    var parts = new List<string>();
                    for (int i = 0; i < n; i++) parts.Add(await ReadAsync(ct));
                    return string.Join(' ', parts);
                case '$':
                    int len = int.Parse(line[1..]);
                    if (len < 0) return "(nil)";
                    var data = new byte[len + 2];
                    await stream.ReadExactlyAsync(data, ct);
                    return Encoding.UTF8.GetString(data, 0, len);
                case '+' or ':': return line[1..];
                default: return line;
            }
        }

        private async Task<string> LineAsync(CancellationToken ct)
        {
            var sb = new StringBuilder();
            while (true)
            {
                await stream.ReadExactlyAsync(_one, ct);
                if (_one[0] == '\n') return sb.ToString().TrimEnd('\r');
                sb.Append((char)_one[0]);
            }
        }
    }

    /// <summary>SIGKILL: Redis vanishes as in a crash.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(5000);
        }
    }

    private static string Find()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Prepend("/usr/bin"))
            if (dir.Length > 0 && File.Exists(Path.Combine(dir, "redis-server"))) return Path.Combine(dir, "redis-server");
        throw new InvalidOperationException("redis-server is not installed; run ./test.sh, which installs it");
    }

    /// <summary>A port free now (another process may take it before redis-server binds it: the start is retried).</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose() => Release(deleteConfig: true);

    private void Release(bool deleteConfig)
    {
        Kill();
        _process?.Dispose();
        if (deleteConfig && _configFile is not null) File.Delete(_configFile);
        Directory.Delete(_dir, recursive: true);
    }
}
