using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Tiers.Tests;

/// <summary>Puts and gets straight through a <see cref="TieredStore"/>, as the node's handlers do.</summary>
internal static class StoreHelpers
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    public static async Task<WireStatus> PutAsync(this TieredStore store, string key, byte[] value)
    {
        var status = store.TryReserve(TestValues.Key(key), value.Length, out var reservation);
        if (status != WireStatus.Ok) return status;
        value.CopyTo(reservation!.Span);
        return await store.CommitAsync(reservation, Crc32C.Compute(value)).WaitAsync(Deadline);
    }

    /// <summary>The value, or null for a miss (a damaged or absent copy).</summary>
    public static async Task<byte[]?> GetAsync(this TieredStore store, string key)
    {
        var (status, lease) = await store.LeaseAsync(TestValues.Key(key), null).AsTask().WaitAsync(Deadline);
        if (status != WireStatus.Ok) return null;
        try
        {
            return lease!.Span.ToArray();
        }
        finally
        {
            store.Release(lease!);
        }
    }

    public static async Task<WireStatus> RemoveAsync(this TieredStore store, string key)
        => await store.RemoveAsync(TestValues.Key(key)).AsTask().WaitAsync(Deadline);

    public static long Stat(this TieredStore store, string name) => store.TierStats().Single(p => p.Key == name).Value;
}
