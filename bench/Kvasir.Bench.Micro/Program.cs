using BenchmarkDotNet.Running;

namespace Kvasir.Bench.Micro;

/// <summary>
/// BenchmarkDotNet micro-benchmarks of the hot paths: allocators and the store's reserve/lease path, frame
/// encode/decode, CRC-32C and key hashing, and the engine-side prefix cache and KV pool (Kvasir.Prefix). Every class reports allocated bytes per operation.
/// Usage: dotnet run -c Release --project bench/Kvasir.Bench.Micro -- --filter '*' [--job short]
/// Or: ... -- prefix-cpu [rounds] [lookups]: PrefixCache lookups and inserts timed in CPU time (<see cref="PrefixLookupCpuTime"/>).
/// Or: ... -- crc [rounds] [sizes]: every CRC-32C path, interleaved, in GB/s (<see cref="Crc32CThroughput"/>).
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "prefix-cpu") PrefixLookupCpuTime.Run(args);
        else if (args.Length > 0 && args[0] == "crc") Crc32CThroughput.Run(args);
        else BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
