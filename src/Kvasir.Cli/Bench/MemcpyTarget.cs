namespace Kvasir.Cli.Bench;

/// <summary>
/// The floor of the ladder: the same workload served by a plain in-process table of byte arrays,
/// where a PUT and a GET are one memcpy each. Shared by every lane (its tables are per key, and
/// the bench never writes one key from two lanes at once with different bytes).
/// </summary>
public sealed class MemcpyTarget(int keyCount, int valueSize) : IBenchTarget
{
    public string Transport => "memcpy";

    private readonly byte[]?[] _values = new byte[]?[keyCount];
    private readonly Dictionary<string, int> _index = new(keyCount);

    private int Slot(ReadOnlyMemory<byte> key)
    {
        var name = System.Text.Encoding.ASCII.GetString(key.Span);
        lock (_index)
        {
            if (!_index.TryGetValue(name, out int slot)) _index[name] = slot = _index.Count;
            return slot;
        }
    }

    public Task<int> PutAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<ReadOnlyMemory<byte>> values)
    {
        for (int i = 0; i < keys.Count; i++)
        {
            var slot = _values[Slot(keys[i])] ??= new byte[valueSize];
            values[i].Span.CopyTo(slot);
        }
        return Task.FromResult(0);
    }

    public Task GetAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, IReadOnlyList<Memory<byte>> destinations, long[] lengths)
    {
        for (int i = 0; i < keys.Count; i++)
        {
            var value = _values[Slot(keys[i])];
            if (value is null) { lengths[i] = IBenchTarget.Miss; continue; }
            value.CopyTo(destinations[i].Span);
            lengths[i] = value.Length;
        }
        return Task.CompletedTask;
    }

    public Task ExistsAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, int[] present)
    {
        for (int i = 0; i < keys.Count; i++) present[i] = _values[Slot(keys[i])] is null ? 0 : 1;
        return Task.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
