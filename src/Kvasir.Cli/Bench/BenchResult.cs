using System.Globalization;
using System.Text.Json.Nodes;

namespace Kvasir.Cli.Bench;

/// <summary>What a run measured. Throughput counts only values that succeeded (hits that verified, stored puts).</summary>
public sealed record BenchResult(
    string Target, string Transport, string Op, long ValueSize, int Batch, int Inflight, double Seconds, long Requests, long Values,
    double Gbps, double OpsPerSecond, double P50Us, double P90Us, double P99Us, double P999Us,
    long Errors, long Misses, long VerifyFailures)
{
    /// <summary>
    /// This (the load generator's) process's CPU seconds and context switches over the measured time, every thread:
    /// the client's cost, which on a machine shared by client and server counts as much as the server's.
    /// </summary>
    internal ProcessCost ClientCost { get; init; }

    /// <summary>Client CPU seconds per GB (10^9 bytes) of good payload; 0 when nothing moved.</summary>
    public double ClientCpuSecondsPerGB => Gbps > 0 ? ClientCost.CpuSeconds / (Gbps * Seconds) : 0;

    public string ToJson() => new JsonObject
    {
        ["target"] = Target,
        ["transport"] = Transport,
        ["op"] = Op,
        ["value_size"] = ValueSize,
        ["batch"] = Batch,
        ["inflight"] = Inflight,
        ["seconds"] = Math.Round(Seconds, 3),
        ["requests"] = Requests,
        ["values"] = Values,
        ["gbps"] = Math.Round(Gbps, 3),
        ["ops_per_s"] = Math.Round(OpsPerSecond, 1),
        ["p50_us"] = Math.Round(P50Us, 1),
        ["p90_us"] = Math.Round(P90Us, 1),
        ["p99_us"] = Math.Round(P99Us, 1),
        ["p999_us"] = Math.Round(P999Us, 1),
        ["errors"] = Errors,
        ["misses"] = Misses,
        ["verify_failures"] = VerifyFailures,
        ["client_cpu_s_per_gb"] = Math.Round(ClientCpuSecondsPerGB, 4),
        ["client_switches_per_request"] = Requests > 0 ? Math.Round(ClientCost.Switches / (double)Requests, 2) : 0,
    }.ToJsonString();

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Target} over {Transport} {Op} {ByteSize.Format(ValueSize)} x{Batch} inflight {Inflight}: {Gbps:F2} GB/s, {OpsPerSecond:F0} values/s, " +
        $"latency p50 {P50Us:F0} us p90 {P90Us:F0} us p99 {P99Us:F0} us p99.9 {P999Us:F0} us, " +
        $"errors {Errors}, misses {Misses}, verify failures {VerifyFailures}, " +
        $"client CPU {ClientCpuSecondsPerGB:F3} s/GB");
}
