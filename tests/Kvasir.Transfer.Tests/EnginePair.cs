namespace Kvasir.Transfer.Tests;

/// <summary>Two real engines on 127.0.0.1 (ephemeral ports), the first connected to the second.</summary>
public sealed class EnginePair : IDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    private EnginePair(TransferEngine initiator, TransferEngine target, int connId, int targetConnId)
    {
        Initiator = initiator;
        Target = target;
        ConnId = connId;
        TargetConnId = targetConnId;
    }

    public TransferEngine Initiator { get; }
    public TransferEngine Target { get; }

    /// <summary>The connection's id in the initiator.</summary>
    public int ConnId { get; }

    /// <summary>The same connection's id in the target.</summary>
    public int TargetConnId { get; }

    public static async Task<EnginePair> StartAsync(TransferEngineOptions? initiator = null, TransferEngineOptions? target = null)
    {
        var a = TransferEngine.Start(initiator ?? new TransferEngineOptions());
        var b = TransferEngine.Start(target ?? new TransferEngineOptions());
        try
        {
            var accepting = b.AcceptAsync();
            int conn = await a.ConnectAsync("127.0.0.1", b.Port).WaitAsync(Deadline);
            var accepted = await accepting.WaitAsync(Deadline);
            return new EnginePair(a, b, conn, accepted.ConnId);
        }
        catch
        {
            a.Dispose();
            b.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Initiator.Dispose();
        Target.Dispose();
    }
}

public static class Bytes
{
    /// <summary>Deterministic non-repeating-looking test bytes: byte i = (i × 131 + seed) mod 251, the interop peer's fill pattern.</summary>
    public static byte[] Pattern(long length, int seed)
    {
        var b = new byte[length];
        for (long i = 0; i < length; i++) b[i] = (byte)((i * 131 + seed) % 251);
        return b;
    }
}
