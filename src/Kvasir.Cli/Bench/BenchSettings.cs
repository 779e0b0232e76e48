namespace Kvasir.Cli.Bench;

/// <summary>One benchmark run's shape.</summary>
public sealed record BenchSettings
{
    /// <summary>put, get, mixed (GETs with probability <see cref="ReadRatio"/>, else PUTs) or exists.</summary>
    public string Op { get; init; } = "get";
    public double ReadRatio { get; init; } = 0.9;
    public int ValueSize { get; init; } = 1 << 20;
    public int Batch { get; init; } = 16;
    public int Inflight { get; init; } = 4;
    public int Keys { get; init; } = 256;
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Stop after this many requests in all instead of after <see cref="Duration"/>.</summary>
    public long? Requests { get; init; }
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(1);
    public VerifyMode Verify { get; init; } = VerifyMode.Sample;
    /// <summary>Write every key before get, mixed and exists runs.</summary>
    public bool Prefill { get; init; } = true;

    public static readonly string[] Ops = ["put", "get", "mixed", "exists"];
}
