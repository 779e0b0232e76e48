using System.Net.Sockets;
using System.Threading.Channels;
using Kvasir.Server.Transport;
using Kvasir.Storage;

namespace Kvasir.Server.Internal;

/// <summary>
/// Sends a connection's replies in order. Headers and metadata of queued replies are gathered into
/// one staging buffer so a burst of small replies costs one send; values are sent straight from
/// their leased arena memory, except values of at most <see cref="CoalesceLimit"/> bytes, which are
/// copied into the staging buffer because for them a syscall costs more than the copy.
/// </summary>
internal sealed class ReplyWriter(Socket socket, KvArenaStore store, NodeCounters counters)
{
    /// <summary>Values up to this size ride in the staging buffer with their header.</summary>
    public const int CoalesceLimit = 8 * 1024;

    private readonly byte[] _staging = new byte[128 * 1024];
    private int _staged;

    /// <summary>Runs until the queue completes. Returns true when the last reply asked to close the connection.</summary>
    public async Task RunAsync(ChannelReader<Reply> queue, CancellationToken abort)
    {
        bool broken = false;
        while (await queue.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            while (queue.TryRead(out var reply))
            {
                try
                {
                    if (!broken) await SendAsync(reply, abort).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
                {
                    // The peer is gone or the connection was aborted: keep draining the queue so
                    // every lease is released, but send nothing more.
                    broken = true;
                }
                finally
                {
                    reply.Complete(store);
                }
            }
            if (!broken)
            {
                try { await FlushAsync(abort).ConfigureAwait(false); }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException) { broken = true; }
            }
        }
    }

    private async ValueTask SendAsync(Reply reply, CancellationToken abort)
    {
        await AppendAsync(reply.Buffer.AsMemory(0, reply.Length), abort).ConfigureAwait(false);
        counters.Out(reply.Length);
        if (reply.Leases is null) return;
        for (int i = 0; i < reply.LeaseCount; i++)
        {
            if (reply.Leases[i] is not { } lease || lease.Length == 0) continue;
            var memory = new NativeMemoryManager(lease.Address, checked((int)lease.Length)).Memory;
            await AppendAsync(memory, abort).ConfigureAwait(false);
            counters.Out(lease.Length);
        }
    }

    private async ValueTask AppendAsync(ReadOnlyMemory<byte> data, CancellationToken abort)
    {
        if (data.Length <= _staging.Length - _staged && (data.Length <= CoalesceLimit || _staged == 0 && data.Length < _staging.Length / 2))
        {
            data.Span.CopyTo(_staging.AsSpan(_staged));
            _staged += data.Length;
            return;
        }
        await FlushAsync(abort).ConfigureAwait(false);
        if (data.Length <= CoalesceLimit)
        {
            data.Span.CopyTo(_staging);
            _staged = data.Length;
            return;
        }
        await socket.SendAsync(data, SocketFlags.None, abort).ConfigureAwait(false);
    }

    private async ValueTask FlushAsync(CancellationToken abort)
    {
        if (_staged == 0) return;
        int n = _staged;
        _staged = 0;
        await socket.SendAsync(_staging.AsMemory(0, n), SocketFlags.None, abort).ConfigureAwait(false);
    }
}
