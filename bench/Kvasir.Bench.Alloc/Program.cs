using System.Globalization;
using Kvasir.Bench.Alloc;

// Allocator utilisation benchmark: how much of the arena holds live values at steady state, per workload and mode.
// Usage: dotnet run -c Release --project bench/Kvasir.Bench.Alloc -- [--capacity 1GiB] [--seed 1]
long capacity = 1L << 30;
int seed = 1;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--capacity" when i + 1 < args.Length:
            capacity = ParseSize(args[++i]);
            break;
        case "--seed" when i + 1 < args.Length:
            seed = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        default:
            Console.Error.WriteLine("usage: Kvasir.Bench.Alloc [--capacity 1GiB] [--seed 1]");
            return 2;
    }
}

Console.WriteLine($"capacity {Simulation.Size(capacity)}, seed {seed}, Lru, wm = high/low watermark, steady state = last 2x capacity of 3x written");
Console.WriteLine();

// Warm-up so tiered JIT compilation does not land in the first measured row.
Simulation.Run(Workload.Mixed, 64L << 20, blockSize: null, seed);
Simulation.Run(Workload.Uniform256K, 64L << 20, blockSize: 256 << 10, seed);

var results = new List<SimulationResult>
{
    Simulation.Run(Workload.Uniform256K, capacity, blockSize: null, seed),
    Simulation.Run(Workload.Uniform256K, capacity, blockSize: 256 << 10, seed),
    Simulation.Run(Workload.Mixed, capacity, blockSize: null, seed),

    // Watermarks pushed to the top: eviction happens only when an allocation fails, which exposes fragmentation.
    Simulation.Run(Workload.Uniform256K, capacity, blockSize: null, seed, highWatermark: 1.0, lowWatermark: 1.0),
    Simulation.Run(Workload.Mixed, capacity, blockSize: null, seed, highWatermark: 1.0, lowWatermark: 1.0),
};
Console.Write(Simulation.Table(results));
return 0;

static long ParseSize(string text)
{
    (string suffix, long scale)[] units = [("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10)];
    foreach ((string suffix, long scale) in units)
    {
        if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
        {
            return long.Parse(text[..^suffix.Length], CultureInfo.InvariantCulture) * scale;
        }
    }

    return long.Parse(text, CultureInfo.InvariantCulture);
}
