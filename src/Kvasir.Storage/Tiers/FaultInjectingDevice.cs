namespace Kvasir.Storage.Tiers;

/// <summary>
/// Faults to inject, shared by every device of a <see cref="FaultInjectingDeviceFactory"/>; change
/// them at any time. Used by tests (Tsavorite's simulated flaky device is the model).
/// </summary>
public sealed class DeviceFaults
{
    /// <summary>Every write throws (an I/O error), writing nothing.</summary>
    public volatile bool FailWrites;

    /// <summary>Every read throws (an I/O error).</summary>
    public volatile bool FailReads;

    /// <summary>Reads succeed but flip one bit in the middle of what they return (silent corruption).</summary>
    public volatile bool CorruptReads;

    /// <summary>Every flush (fsync) throws, after the writes before it reached the file (an fsync that reports an I/O error).</summary>
    public volatile bool FailFlushes;

    /// <summary>The next write stores only its first half, then throws: a torn write, as a crash leaves it.</summary>
    public volatile bool TearNextWrite;

    /// <summary>
    /// When set, every read waits until the event is signalled (a stalled device): a test holds a tier read thread with
    /// it to order a race. <see cref="ReadsWaiting"/> counts the reads waiting.
    /// </summary>
    public volatile ManualResetEventSlim? ReadGate;

    public long ReadsWaiting;

    /// <summary>Writes that would take the factory's files past this many bytes in all throw "no space left". Default unlimited.</summary>
    public long DiskBytes = long.MaxValue;

    public long WritesFailed;
    public long ReadsFailed;
}

/// <summary>Wraps a real factory; its devices misbehave as <see cref="Faults"/> says.</summary>
public sealed class FaultInjectingDeviceFactory(IDeviceFactory inner) : IDeviceFactory
{
    public DeviceFaults Faults { get; } = new();

    internal long UsedBytes() => inner.List().Sum(n => { using var d = inner.Open(n); return d.Length; });

    public IDevice Open(string name) => new FaultInjectingDevice(inner.Open(name), this);

    public void Delete(string name) => inner.Delete(name);

    public IReadOnlyList<string> List() => inner.List();

    private sealed class FaultInjectingDevice(IDevice inner, FaultInjectingDeviceFactory factory) : IDevice
    {
        private DeviceFaults F => factory.Faults;

        public string Name => inner.Name;

        public long Length => inner.Length;

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (F.FailWrites) { Interlocked.Increment(ref F.WritesFailed); throw new IOException("injected write error"); }
            long growth = Math.Max(0, offset + data.Length - inner.Length);
            if (growth > 0 && factory.UsedBytes() + growth > Volatile.Read(ref F.DiskBytes))
            {
                Interlocked.Increment(ref F.WritesFailed);
                throw new IOException("No space left on device (injected)");
            }
            if (F.TearNextWrite)
            {
                F.TearNextWrite = false;
                inner.Write(offset, data[..(data.Length / 2)]);
                Interlocked.Increment(ref F.WritesFailed);
                throw new IOException("injected torn write");
            }
            inner.Write(offset, data);
        }

        public int Read(long offset, Span<byte> destination)
        {
            if (F.ReadGate is { } gate && !gate.IsSet)
            {
                Interlocked.Increment(ref F.ReadsWaiting);
                gate.Wait();
                Interlocked.Decrement(ref F.ReadsWaiting);
            }
            if (F.FailReads) { Interlocked.Increment(ref F.ReadsFailed); throw new IOException("injected read error"); }
            int n = inner.Read(offset, destination);
            if (F.CorruptReads && n > 0) destination[n / 2] ^= 0x10;
            return n;
        }

        public void Flush()
        {
            if (F.FailFlushes) throw new IOException("injected flush error");
            inner.Flush();
        }

        public void Dispose() => inner.Dispose();
    }
}
