using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// A real redis-server on 127.0.0.1 and a free port (./test.sh installs it), killed by pid on
/// dispose. It can be stopped and started again on the same port, to test losing Redis.
/// </summary>
public sealed class RedisProcess : IDisposable
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(15);
    private readonly StringBuilder _log = new();
    private Process? _process;

    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";
    public string Log { get { lock (_log) return _log.ToString(); } }

    private RedisProcess(int port) => Port = port;

    public static RedisProcess Start()
    {
        for (int attempt = 0; ; attempt++)
        {
            var redis = new RedisProcess(FreePort());
            if (redis.TryStart()) return redis;
            redis.Dispose();
            if (attempt == 4) throw new InvalidOperationException($"redis-server did not start:\n{redis.Log}");
        }
    }

    /// <summary>Starts the server again on the same port, after <see cref="Kill"/>.</summary>
    public void Restart()
    {
        if (!TryStart()) throw new InvalidOperationException($"redis-server did not restart on port {Port}:\n{Log}");
    }

    private bool TryStart()
    {
        var psi = new ProcessStartInfo(Find()) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetTempPath() };
        foreach (var a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning" })
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
                if (s.Receive(buffer) > 0 && buffer[0] == (byte)'+') return true;
            }
            catch (SocketException) { }
            Thread.Sleep(20);
        }
        return false;
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

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        Kill();
        _process?.Dispose();
    }
}
