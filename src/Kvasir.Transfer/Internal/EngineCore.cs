using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Kvasir.Transfer.Internal;

/// <summary>The state every part of one engine shares: identity, options, tables of regions, advertisements, transfers, sessions and notifications.</summary>
internal sealed class EngineCore
{
    private readonly ConcurrentQueue<TransferNotification> _notifications = new();
    private TaskCompletionSource _notified = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _nextConnId;
    private long _sharedTransfers;

    public EngineCore(TransferEngineOptions options)
    {
        Options = options;
        Key = options.AuthKey is null ? null : Kvasir.Protocol.AuthHandshake.ParseKey(options.AuthKey);
        EngineId = Advertisements.RandomToken();
        HostId = ReadHostId();
    }

    public TransferEngineOptions Options { get; }

    public byte[]? Key { get; }

    public UInt128 EngineId { get; }

    public UInt128 HostId { get; }

    /// <summary>The max_slice this engine announces and accepts.</summary>
    public int MaxSlice => Options.SliceBytes;

    public RegionTable Regions { get; } = new();

    public Advertisements Adverts { get; } = new();

    public TransferTable Transfers { get; } = new();

    /// <summary>This engine's mappings of same-host targets' shared files.</summary>
    public SharedWindows SharedWindows { get; } = new();

    /// <summary>Transfers that went through a same-host shared file instead of the lanes.</summary>
    public long SharedTransfers => Interlocked.Read(ref _sharedTransfers);

    public void CountSharedTransfer() => Interlocked.Increment(ref _sharedTransfers);

    public ConcurrentDictionary<int, Session> Sessions { get; } = new();

    public ConcurrentDictionary<int, KvBuffer> KvBuffers { get; } = new();

    public int NextConnId() => Interlocked.Increment(ref _nextConnId);

    public Session GetSession(int connId) => Sessions.TryGetValue(connId, out var s)
        ? s
        : throw new TransferException(TransferError.UnknownId, $"no connection {connId} in this engine (never opened, or closed)");

    public void OnSessionClosed(Session session)
    {
        Sessions.TryRemove(session.ConnId, out _);
        Adverts.WithdrawConnection(session.ConnId);
    }

    public void AddNotification(int connId, byte[] bytes)
    {
        _notifications.Enqueue(new TransferNotification(connId, bytes));
        Interlocked.Exchange(ref _notified, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    public List<TransferNotification> TakeNotifications()
    {
        var list = new List<TransferNotification>();
        while (_notifications.TryDequeue(out var n)) list.Add(n);
        return list;
    }

    /// <summary>Completes when a notification arrives after this call (or is already waiting).</summary>
    public Task NotificationArrived()
    {
        var t = Volatile.Read(ref _notified).Task;
        return _notifications.IsEmpty ? t : Task.CompletedTask;
    }

    /// <summary>The machine's boot id (/proc/sys/kernel/random/boot_id as hex); 16 random bytes where it is missing.</summary>
    private static UInt128 ReadHostId()
    {
        try
        {
            var hex = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim().Replace("-", "", StringComparison.Ordinal);
            var bytes = Convert.FromHexString(hex);
            if (bytes.Length == 16) return BinaryPrimitives.ReadUInt128LittleEndian(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return BinaryPrimitives.ReadUInt128LittleEndian(RandomNumberGenerator.GetBytes(16));
    }
}
