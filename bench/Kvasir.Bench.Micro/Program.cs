using BenchmarkDotNet.Running;

namespace Kvasir.Bench.Micro;

/// <summary>
/// BenchmarkDotNet micro-benchmarks of the hot paths: allocators and the store's reserve/lease path, frame
/// encode/decode, CRC-32C and key hashing, and the engine-side prefix cache and KV pool (Kvasir.Prefix). Every class reports allocated bytes per operation.
/// Usage: dotnet run -c Release --project bench/Kvasir.Bench.Micro -- --filter '*' [--job short]
/// Or: ... -- prefix-cpu [rounds] [lookups]: PrefixCache lookups and inserts timed in CPU time (<see cref="PrefixLookupCpuTime"/>).
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "prefix-cpu") PrefixLookupCpuTime.Run(args);
        else BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
