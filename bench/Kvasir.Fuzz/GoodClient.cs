using System.Text;
using Kvasir.Client;

namespace Kvasir.Fuzz;

/// <summary>
/// A well-behaved client running beside the fuzzer: it PUTs values whose bytes follow from (key, version) and reads
/// them back, counting every read that returns bytes other than the last version it wrote (a wrong byte: the one
/// failure a cache may never have). Misses are allowed (eviction); errors are counted and reported.
/// </summary>
internal sealed class GoodClient(KvStore store, string name, int seed)
{
    private readonly Random _rng = new(seed);
    private readonly Dictionary<int, int> _versions = [];

    public long Puts { get; private set; }
    public long Reads { get; private set; }
    public long Hits { get; private set; }
    public long WrongBytes { get; private set; }
    public long Errors { get; private set; }
    public string? FirstProblem { get; private set; }

    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            int k = _rng.Next(256);
            var key = Encoding.UTF8.GetBytes($"good/{name}/{k}");
            try
            {
                if (_rng.Next(3) == 0 || !_versions.ContainsKey(k))
                {
                    int version = _versions.GetValueOrDefault(k) + 1;
                    var status = (await store.PutAsync([key], [Value(k, version)]))[0];
                    Puts++;
                    if (status == KvStatus.Ok) _versions[k] = version;
                    else _versions.Remove(k);   // not stored: the key may hold the old version or nothing
                }
                else
                {
                    var got = await store.GetAsync(key);
                    Reads++;
                    if (got is null) continue;
                    Hits++;
                    if (!got.AsSpan().SequenceEqual(Value(k, _versions[k])))
                    {
                        WrongBytes++;
                        FirstProblem ??= $"{name}: key {k} read {got.Length} bytes that are not version {_versions[k]}";
                    }
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Errors++;
                FirstProblem ??= $"{name}: {ex.GetType().Name}: {ex.Message}";
                _versions.Clear();   // after an error nothing is known about what was stored
            }
        }
    }

    private static byte[] Value(int key, int version)
    {
        var rng = new Random(HashCode.Combine(key, version, 0x5eed));
        var bytes = new byte[1 + rng.Next(64 * 1024)];
        rng.NextBytes(bytes);
        return bytes;
    }
}
