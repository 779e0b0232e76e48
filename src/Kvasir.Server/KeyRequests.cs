using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server;

/// <summary>
/// The node's answers to SCAN, INFO and REMOVE_PREFIX, from request metadata to reply metadata (docs/protocol.md,
/// "Key management"). One implementation for the wire and for in-process clients. Malformed or out-of-limit
/// requests throw <see cref="ProtocolException"/>.
/// </summary>
public static class KeyRequests
{
    /// <summary>Answers <paramref name="op"/> (Scan, Info or RemovePrefix) for <paramref name="meta"/>; returns the reply metadata.</summary>
    public static async ValueTask<byte[]> HandleAsync(TieredStore store, Opcode op, ReadOnlyMemory<byte> meta, NodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        int maxKey = options.Store.MaxKeyBytes;
        switch (op)
        {
            case Opcode.Scan:
                return Scan(store, ScanRequest.Read(meta.Span, maxKey, options.MaxBatchKeys));
            case Opcode.Info:
                return Info(store, meta.Span, options.MaxBatchKeys);
            case Opcode.RemovePrefix:
                var prefix = RemovePrefixMessages.ReadRequest(meta.Span, maxKey);
                var (removed, failed) = await store.RemovePrefixAsync(prefix).ConfigureAwait(false);
                return RemovePrefixMessages.Reply(removed, failed);
            default:
                throw new ArgumentException($"{op} is not a key-management opcode", nameof(op));
        }
    }

    private static byte[] Scan(TieredStore store, ScanRequest request)
    {
        var page = store.Scan(request.Prefix, request.Cursor, (int)request.Limit);
        var entries = page.Keys.Select(k => new ScanEntry(k.Key, k.Length)).ToArray();
        byte[] cursor = page.More && entries.Length > 0 ? entries[^1].Key : [];
        var reply = new ScanReply(WireTiers.Bit(WireTiers.Dram), entries, cursor);
        var meta = new byte[reply.Size];
        var w = new MetaWriter(meta);
        reply.Write(ref w);
        return meta;
    }

    private static byte[] Info(TieredStore store, ReadOnlySpan<byte> meta, int maxBatch)
    {
        var keys = new KeyBatchReader(meta, maxBatch);
        var entries = new List<InfoEntry>(keys.Count);
        while (keys.Next(out var key))
        {
            if (key.Length < 1 || key.Length > store.Options.MaxKeyBytes)
            {
                entries.Add(InfoEntry.Missing(WireStatus.InvalidKey));
                continue;
            }
            var info = store.Info(key);
            if (info is null)
            {
                // A missing key still names its namespace: a client explains a QUOTA_EXCEEDED with it.
                var missing = store.NamespaceOf(key);
                entries.Add(InfoEntry.Missing(WireStatus.NotFound) with
                {
                    NamespaceBudget = missing?.BudgetBytes ?? 0,
                    NamespaceUsed = missing?.UsedBytes ?? 0,
                    NamespacePrefix = missing?.Prefix ?? [],
                });
                continue;
            }
            var ns = info.Namespace;
            entries.Add(new InfoEntry(WireStatus.Ok, (byte)info.Tier, info.Length, info.AgeMs, info.TtlMs, (uint)info.Pins, (uint)info.Leases,
                ns?.BudgetBytes ?? 0, ns?.UsedBytes ?? 0, ns?.Prefix ?? []));
        }
        var reply = new byte[InfoReply.Size(entries)];
        var w = new MetaWriter(reply);
        InfoReply.Write(ref w, entries);
        return reply;
    }
}
