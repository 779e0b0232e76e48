namespace Kvasir.Bench.Alloc;

/// <summary>A named value-size distribution: weighted sizes drawn from a seeded generator.</summary>
internal sealed record Workload(string Name, (long Bytes, int Percent)[] Sizes)
{
    public static readonly Workload Uniform256K = new("uniform 256 KiB", [(256 << 10, 100)]);

    public static readonly Workload Mixed = new("mixed 4K 70% / 256K 20% / 3M 10%", [(4 << 10, 70), (256 << 10, 20), (3 << 20, 10)]);

    public long Largest => Sizes.Max(s => s.Bytes);

    public long Next(Random random)
    {
        int roll = random.Next(100);
        foreach ((long bytes, int percent) in Sizes)
        {
            if (roll < percent)
            {
                return bytes;
            }

            roll -= percent;
        }

        return Sizes[^1].Bytes;
    }
}
