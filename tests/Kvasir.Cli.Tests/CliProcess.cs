using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Kvasir.Cli.Tests;

/// <summary>Result of one finished CLI run.</summary>
public sealed record CliResult(int ExitCode, byte[] Stdout, string Stderr)
{
    public string Out => Encoding.UTF8.GetString(Stdout);
    public string[] OutLines => Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
    public string[] ErrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
    public override string ToString() => $"exit {ExitCode}; stdout: {Out}; stderr: {Stderr}";
}

/// <summary>Runs the real <c>kvasir</c> binary (kvasir.dll copied next to the test assembly) as a child process.</summary>
public static partial class Cli
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    public static string Dll
    {
        get
        {
            var path = Path.Combine(AppContext.BaseDirectory, "kvasir.dll");
            Assert.True(File.Exists(path), $"kvasir.dll not found next to the tests ({path})");
            return path;
        }
    }

    private static string DotnetHost
    {
        get
        {
            var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
            var self = Environment.ProcessPath;
            if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
            return "dotnet";
        }
    }

    public static Process Start(IEnumerable<string> args, bool redirectStdin = false, IEnumerable<(string Name, string Value)>? environment = null)
    {
        var psi = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectStdin,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        // The node reads KVASIR_* (docs/operations.md): only what a test sets, never the caller's.
        foreach (var name in psi.Environment.Keys.Where(k => k.StartsWith("KVASIR_", StringComparison.Ordinal)).ToList()) psi.Environment.Remove(name);
        foreach (var (name, value) in environment ?? []) psi.Environment[name] = value;
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start kvasir");
    }

    /// <summary>Runs kvasir to completion (killed at the deadline), optionally feeding stdin.</summary>
    public static async Task<CliResult> RunAsync(params string[] args) => await RunWithInputAsync(null, args);

    public static async Task<CliResult> RunWithInputAsync(byte[]? stdin, params string[] args) => await RunCoreAsync(stdin, [], args);

    public static async Task<CliResult> RunWithEnvironmentAsync((string Name, string Value)[] environment, params string[] args)
        => await RunCoreAsync(null, environment, args);

    private static async Task<CliResult> RunCoreAsync(byte[]? stdin, (string Name, string Value)[] environment, string[] args)
    {
        using var p = Start(args, redirectStdin: stdin is not null, environment);
        try
        {
            using var cts = new CancellationTokenSource(Deadline);
            var stdout = new MemoryStream();
            var outTask = p.StandardOutput.BaseStream.CopyToAsync(stdout, cts.Token);
            var errTask = p.StandardError.ReadToEndAsync(cts.Token);
            if (stdin is not null)
            {
                await p.StandardInput.BaseStream.WriteAsync(stdin, cts.Token);
                p.StandardInput.Close();
            }
            await p.WaitForExitAsync(cts.Token);
            await outTask;
            var err = await errTask;
            return new CliResult(p.ExitCode, stdout.ToArray(), err);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"kvasir {string.Join(' ', args)} did not finish within {Deadline}");
        }
        finally
        {
            KillIfRunning(p);
        }
    }

    public static void KillIfRunning(Process p)
    {
        try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int sig);

    public static void SendSigterm(Process p)
    {
        if (SysKill(p.Id, 15) != 0) throw new InvalidOperationException($"kill({p.Id}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }
}

/// <summary>A running <c>kvasir serve</c> process; its stdout and stderr are collected line by line.</summary>
public sealed partial class ServeProcess : IAsyncDisposable
{
    private readonly ConcurrentQueue<string> _out = new();
    private readonly ConcurrentQueue<string> _err = new();
    private readonly TaskCompletionSource<string> _serving = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _pumps;

    private ServeProcess(Process process)
    {
        Process = process;
        _pumps = Task.WhenAll(Pump(process.StandardOutput, _out, serving: true), Pump(process.StandardError, _err, serving: false));
    }

    public Process Process { get; }
    public int Port { get; private set; }
    public string Server => $"127.0.0.1:{Port}";
    public string Stdout => string.Join('\n', _out);
    public string Stderr => string.Join('\n', _err);

    [GeneratedRegex(@"^kvasir: serving on 127\.0\.0\.1:(\d+) ")]
    private static partial Regex ServingLine();

    /// <summary>Starts serve with the given flags and waits for its "serving on" line.</summary>
    public static async Task<ServeProcess> StartAsync(params string[] flags)
    {
        var serve = new ServeProcess(Cli.Start(["serve", .. flags]));
        try
        {
            var ready = await Task.WhenAny(serve._serving.Task, serve.Process.WaitForExitAsync(), Task.Delay(Cli.Deadline));
            if (ready != serve._serving.Task)
                throw new Xunit.Sdk.XunitException($"serve did not report its port; exited {serve.Process.HasExited}; stdout: {serve.Stdout}; stderr: {serve.Stderr}");
            var m = ServingLine().Match(serve._serving.Task.Result);
            Assert.True(m.Success, $"unexpected serving line: {serve._serving.Task.Result}");
            serve.Port = int.Parse(m.Groups[1].Value);
            Assert.InRange(serve.Port, 1, 65535);
            return serve;
        }
        catch
        {
            await serve.DisposeAsync();
            throw;
        }
    }

    private async Task Pump(StreamReader reader, ConcurrentQueue<string> lines, bool serving)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lines.Enqueue(line);
            if (serving && line.StartsWith("kvasir: serving on ", StringComparison.Ordinal)) _serving.TrySetResult(line);
        }
    }

    /// <summary>Waits for exit and for both streams to be read to the end; false on deadline.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan deadline)
    {
        using var cts = new CancellationTokenSource(deadline);
        try
        {
            await Process.WaitForExitAsync(cts.Token);
            await _pumps.WaitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException) { return false; }
    }

    public async ValueTask DisposeAsync()
    {
        Cli.KillIfRunning(Process);
        try { await _pumps.WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { }
        Process.Dispose();
    }
}
