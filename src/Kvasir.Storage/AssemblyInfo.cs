using System.Runtime.CompilerServices;

// The micro-benchmarks time the allocators and the key comparer directly (bench/Kvasir.Bench.Micro).
[assembly: InternalsVisibleTo("Kvasir.Bench.Micro")]
