using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Kvasir.Net;
using Kvasir.Storage;

namespace Kvasir.Server.Internal;

/// <summary>
/// Sends a connection's replies in order, with as few syscalls as possible: headers, metadata and
/// values of at most <see cref="CoalesceLimit"/> bytes are copied into a pinned staging buffer;
/// larger values are sent straight from their leased arena memory; all of it goes out through one
/// <see cref="GatherSender"/> (sendmsg over many segments) whenever the queue runs dry or the
/// staging buffer or segment list fills. A reply is completed — its leases released — only after
/// the flush that sent its bytes returned, so no lease is dropped while the kernel may still read
/// its memory.
/// </summary>
internal sealed class ReplyWriter
{
    /// <summary>Values up to this size ride in the staging buffer with their header.</summary>
    public const int CoalesceLimit = 8 * 1024;

    private readonly TieredStore _store;
    private readonly NodeCounters _counters;
    private readonly GatherSender _sender;
    private readonly byte[] _staging = GC.AllocateUninitializedArray<byte>(128 * 1024, pinned: true);
    private readonly nint _stagingAddress;
    private readonly List<Reply> _unflushed = [];
    private int _sealed, _staged;

    /// <summary>Called for each reply as the writer takes it from the queue, before any of its bytes are sent.</summary>
    public Action? Taken { get; init; }

    public ReplyWriter(Socket socket, TieredStore store, NodeCounters counters) : this(new GatherSender(socket), store, counters) { }

    /// <summary>Writes through <paramref name="stream"/> (an SslStream on a TLS node).</summary>
    public ReplyWriter(Stream stream, TieredStore store, NodeCounters counters) : this(new GatherSender(stream), store, counters) { }

    private unsafe ReplyWriter(GatherSender sender, TieredStore store, NodeCounters counters)
    {
        _store = store;
        _counters = counters;
        _sender = sender;
        _stagingAddress = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_staging));
    }

    /// <summary>Runs until the queue completes; every reply taken from the queue is completed exactly once.</summary>
    public async Task RunAsync(ChannelReader<Reply> queue, CancellationToken abort)
    {
        bool broken = false;
        try
        {
            while (await queue.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (queue.TryRead(out var reply))
                {
                    Taken?.Invoke();
                    _unflushed.Add(reply);
                    if (broken) continue;
                    try { await AppendAsync(reply, abort).ConfigureAwait(false); }
                    catch (Exception ex) when (IsSendFailure(ex)) { broken = true; }
                }
                if (!broken)
                {
                    try { await FlushAsync(abort).ConfigureAwait(false); }
                    catch (Exception ex) when (IsSendFailure(ex)) { broken = true; }
                }
                // The peer gone or the connection aborted: keep draining so every lease is released.
                CompleteUnflushed();
            }
        }
        finally
        {
            CompleteUnflushed();
        }
    }

    private async ValueTask AppendAsync(Reply reply, CancellationToken abort)
    {
        if (reply.Length <= _staging.Length - _staged) Stage(reply.Buffer.AsSpan(0, reply.Length));
        else
        {
            await FlushAsync(abort).ConfigureAwait(false);
            if (reply.Length <= _staging.Length) Stage(reply.Buffer.AsSpan(0, reply.Length));
            else
            {
                _sender.Add(reply.Buffer.AsMemory(0, reply.Length));
                await _sender.FlushAsync(abort).ConfigureAwait(false);
            }
        }
        var op = (Kvasir.Protocol.Opcode)reply.Buffer[5];   // a reply carries its request's opcode
        _counters.Out(op, reply.Length);
        if (reply.Leases is null) return;
        for (int i = 0; i < reply.LeaseCount; i++)
        {
            if (reply.Leases[i] is not { } lease || lease.Length == 0) continue;
            if (lease.Length <= CoalesceLimit)
            {
                if (lease.Length > _staging.Length - _staged) await FlushAsync(abort).ConfigureAwait(false);
                Stage(lease.Span);
            }
            else
            {
                SealStaging();
                if (_sender.IsFull) await FlushAsync(abort).ConfigureAwait(false);
                _sender.Add(lease.Address, checked((int)lease.Length));
                if (_sender.Count >= GatherSender.MaxSegments - 1) await FlushAsync(abort).ConfigureAwait(false);
            }
            _counters.Out(op, lease.Length);
            _counters.ValueOut(NodeTransport.Tcp, op, lease.Length);
        }
    }

    private void Stage(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_staging.AsSpan(_staged));
        _staged += bytes.Length;
    }

    private void SealStaging()
    {
        if (_staged == _sealed) return;
        _sender.Add(_stagingAddress + _sealed, _staged - _sealed);
        _sealed = _staged;
    }

    private async ValueTask FlushAsync(CancellationToken abort)
    {
        SealStaging();
        try
        {
            if (_sender.Count > 0) await _sender.FlushAsync(abort).ConfigureAwait(false);
        }
        finally
        {
            _sealed = _staged = 0;
        }
    }

    private void CompleteUnflushed()
    {
        foreach (var reply in _unflushed) reply.Complete(_store);
        _unflushed.Clear();
    }

    private static bool IsSendFailure(Exception ex) => ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException;
}
