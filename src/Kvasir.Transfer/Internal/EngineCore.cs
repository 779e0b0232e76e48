using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer.Internal;

/// <summary>The state every part of one engine shares: identity, options, tables of regions, advertisements, transfers, sessions and notifications.</summary>
internal sealed class EngineCore
{
    private readonly List<TransferNotification> _notifications = [];   // guarded by itself, as is _pulls
    private readonly Dictionary<(int ConnId, ulong Tag), LayerPull> _pulls = [];
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

    /// <summary>Every thread the engine started (lanes, handshakes); disposing joins them.</summary>
    public ThreadRegistry Threads { get; } = new();

    /// <summary>Cancelled when the engine is disposed: handshakes in progress end.</summary>
    public CancellationTokenSource Stopping { get; } = new();

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
        List<LayerPull> pulls;
        lock (_notifications) pulls = [.. _pulls.Values.Where(p => p.ConnId == session.ConnId)];
        foreach (var p in pulls) p.ConnectionClosed(session.ClosedReason ?? "the connection closed");
    }

    /// <summary>A notification arrived: a layer-ready note goes to its pull (same connection and tag), anything else to the list.</summary>
    public void AddNotification(int connId, byte[] bytes)
    {
        LayerPull? pull = null;
        LayerReadyNote note = default;
        lock (_notifications)
        {
            if (!LayerReadyNote.TryParse(bytes, out note) || !_pulls.TryGetValue((connId, note.Tag), out pull))
                _notifications.Add(new TransferNotification(connId, bytes));
        }
        if (pull is not null)
        {
            pull.Announce(note.Group);   // starts a read: queues slices or copies from a shared file, never waits
            return;
        }
        Interlocked.Exchange(ref _notified, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>Opens a pull and hands it the notes of its connection and tag that arrived before it.</summary>
    public void AddPull(LayerPull pull)
    {
        var early = new List<uint>();
        lock (_notifications)
        {
            if (!_pulls.TryAdd((pull.ConnId, pull.Tag), pull))
                throw new TransferException(TransferError.InvalidArgument, $"connection {pull.ConnId} already has a layer pull with tag {pull.Tag}");
            for (int i = 0; i < _notifications.Count; i++)
            {
                var n = _notifications[i];
                if (n.ConnId != pull.ConnId || !LayerReadyNote.TryParse(n.Bytes, out var note) || note.Tag != pull.Tag) continue;
                _notifications.RemoveAt(i--);
                early.Add(note.Group);
            }
        }
        foreach (uint group in early) pull.Announce(group);
    }

    public void RemovePull(LayerPull pull)
    {
        lock (_notifications)
        {
            if (_pulls.TryGetValue((pull.ConnId, pull.Tag), out var p) && p == pull) _pulls.Remove((pull.ConnId, pull.Tag));
        }
    }

    public List<TransferNotification> TakeNotifications()
    {
        lock (_notifications)
        {
            var list = new List<TransferNotification>(_notifications);
            _notifications.Clear();
            return list;
        }
    }

    /// <summary>Completes when a notification arrives after this call (or is already waiting).</summary>
    public Task NotificationArrived()
    {
        var t = Volatile.Read(ref _notified).Task;
        lock (_notifications) return _notifications.Count == 0 ? t : Task.CompletedTask;
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
