using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Kvasir.Transfer.Tests;

/// <summary>
/// A running interop peer (docs/transfer.md § Interop peer) in its own process: the .NET
/// <c>kvasir transfer-peer</c> or the Python <c>python3 -m kvasir.transfer.peer</c>. Its stdout JSON lines
/// are collected as events; disposing kills it.
/// </summary>
public sealed class PeerProcess : IDisposable
{
    private readonly BlockingCollection<JsonObject> _events = [];
    private readonly ConcurrentQueue<string> _stderr = new();
    private readonly ConcurrentQueue<string> _stdout = new();

    private PeerProcess(Process process)
    {
        Process = process;
        _ = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                _stdout.Enqueue(line);
                try { if (JsonNode.Parse(line) is JsonObject o) _events.Add(o); }
                catch (System.Text.Json.JsonException) { }
            }
            _events.CompleteAdding();
        });
        _ = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line) _stderr.Enqueue(line);
        });
    }

    public Process Process { get; }

    public int Port { get; private set; }

    public byte[] Metadata { get; private set; } = [];

    public string Output => $"stdout: {string.Join(" | ", _stdout)}; stderr: {string.Join(" | ", _stderr)}";

    /// <summary>The .NET peer: kvasir.dll (copied next to the tests) under the dotnet host running the tests.</summary>
    public static PeerProcess StartDotnet(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "kvasir.dll");
        Assert.True(File.Exists(dll), $"kvasir.dll not found next to the tests ({dll})");
        return Start(DotnetHost(), [dll, "transfer-peer", .. args], []);
    }

    /// <summary>The Python peer of python/kvasir/transfer, under Debian's /usr/bin/python3.</summary>
    public static PeerProcess StartPython(params string[] args)
    {
        var root = RepoRoot();
        return Start("/usr/bin/python3", ["-m", "kvasir.transfer.peer", .. args], [("PYTHONPATH", Path.Combine(root, "python"))]);
    }

    public static PeerProcess Start(string kind, params string[] args) => kind switch
    {
        "dotnet" => StartDotnet(args),
        "python" => StartPython(args),
        _ => throw new ArgumentException($"unknown peer kind {kind}"),
    };

    /// <summary>Waits for the "listening" event and reads the port and metadata from it.</summary>
    public PeerProcess WaitListening()
    {
        var e = WaitEvent("listening");
        Port = (int)e["port"]!;
        Metadata = Convert.FromHexString((string)e["metadata"]!);
        return this;
    }

    /// <summary>The next event; it must be <paramref name="name"/>.</summary>
    public JsonObject WaitEvent(string name, TimeSpan? timeout = null)
    {
        var limit = timeout ?? EnginePair.Deadline;
        if (!_events.TryTake(out var e, limit))
            Assert.Fail($"no '{name}' event from the peer within {limit.TotalSeconds} s (the peer exited: {Process.HasExited}); {Output}");
        Assert.True((string?)e["event"] == name, $"expected the peer's '{name}' event, got {e.ToJsonString()}; {Output}");
        return e;
    }

    public void Kill()
    {
        try { if (!Process.HasExited) Process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
    }

    public void Dispose()
    {
        Kill();
        Process.WaitForExit(5000);
        Process.Dispose();
    }

    private static PeerProcess Start(string file, string[] args, (string, string)[] environment)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        return new PeerProcess(Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}"));
    }

    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
        var self = Environment.ProcessPath;
        return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
    }

    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no Directory.Build.props above {AppContext.BaseDirectory}");
    }
}
