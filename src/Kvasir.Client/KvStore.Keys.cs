using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using Kvasir.Protocol;

namespace Kvasir.Client;

/// <summary>One key listed by <see cref="KvStore.ScanAsync"/>, with its value's length.</summary>
public sealed record KvKeyEntry(byte[] Key, long Length)
{
    /// <summary>The key as UTF-8 text (invalid bytes replaced).</summary>
    public string Text => Encoding.UTF8.GetString(Key);
}

/// <summary>
/// A page of a scan: keys in byte order (per node, in a cluster), the cursor to pass to the next call (empty when the
/// listing is complete), and the tiers the node lists (<c>dram</c>: keys held only on disk or the shared tier are not listed).
/// </summary>
public sealed record KvKeyPage(IReadOnlyList<KvKeyEntry> Keys, byte[] Cursor, string Tiers)
{
    public bool Done => Cursor.Length == 0;
}

/// <summary>What a node knows of a key (<see cref="KvStore.InfoAsync"/>).</summary>
/// <param name="Status">Ok, NotFound, InvalidKey, or why the node could not answer.</param>
/// <param name="Tier">dram, disk, shared or none.</param>
/// <param name="Length">Value length in bytes.</param>
/// <param name="Age">Time since the value was written (zero when it was found below DRAM).</param>
/// <param name="Ttl">Time until it expires; null when it does not.</param>
/// <param name="Pins">Pins on the value.</param>
/// <param name="Leases">Readers holding it now.</param>
/// <param name="Namespace">Prefix of the namespace the key falls in; null when none.</param>
/// <param name="NamespaceBudget">That namespace's budget in bytes of DRAM on this node.</param>
/// <param name="NamespaceUsed">Bytes its keys hold in this node's DRAM now (disk and shared copies are not counted).</param>
/// <param name="Node">The node that answered.</param>
public sealed record KvKeyInfo(KvStatus Status, string Tier, long Length, TimeSpan Age, TimeSpan? Ttl, int Pins, int Leases,
    byte[]? Namespace, long NamespaceBudget, long NamespaceUsed, string Node);

public sealed partial class KvStore
{
    /// <summary>
    /// One page of the keys that start with <paramref name="prefix"/> (empty: every key), at most <paramref name="pageSize"/>
    /// keys (1..the node's batch limit), resumed from <paramref name="cursor"/> (empty: from the start; else the
    /// <see cref="KvKeyPage.Cursor"/> of the previous page). A page never holds a node's lock for more than one page, so
    /// writers are not blocked by a listing. In a cluster the pages walk every node in turn (the cursor names the node).
    /// </summary>
    /// <exception cref="ArgumentException">A prefix longer than the key limit, a page size outside 1..batch limit, or a cursor this store did not make.</exception>
    public async Task<KvKeyPage> ScanAsync(ReadOnlyMemory<byte> prefix, ReadOnlyMemory<byte> cursor = default, int pageSize = 1000, CancellationToken ct = default)
    {
        CheckPrefix(prefix);
        if (_router is null)
        {
            var limits = _transport.Limits;
            if (pageSize < 1 || pageSize > limits.MaxBatchKeys)
                throw new ArgumentOutOfRangeException(nameof(pageSize), $"page size {pageSize} is outside 1..{limits.MaxBatchKeys} (the node's batch limit)");
            if (cursor.Length > limits.MaxKeyBytes) throw new ArgumentException($"cursor of {cursor.Length} bytes is not one a scan returned", nameof(cursor));
            var request = new ScanRequest(prefix.ToArray(), cursor.ToArray(), (uint)pageSize);
            var meta = new byte[request.Size];
            var w = new MetaWriter(meta);
            request.Write(ref w);
            var reply = ScanReply.Read(await _transport.KeyRequestAsync(Opcode.Scan, meta, ct).ConfigureAwait(false));
            return new KvKeyPage([.. reply.Entries.Select(e => new KvKeyEntry(e.Key, e.Length))], reply.Cursor, TierNames(reply.Tiers));
        }
        await _router.ThrowIfNoNodeAsync("scan").ConfigureAwait(false);
        // Cluster cursor: node index (u16, over the nodes sorted by id) then that node's cursor.
        var nodes = _router.Nodes.OrderBy(n => n.Id, StringComparer.Ordinal).ToList();
        int index = 0;
        byte[] inner = [];
        if (!cursor.IsEmpty)
        {
            if (cursor.Length < 2) throw new ArgumentException("cursor is not one a scan returned", nameof(cursor));
            index = BinaryPrimitives.ReadUInt16LittleEndian(cursor.Span);
            inner = cursor[2..].ToArray();
        }
        for (; index < nodes.Count; index++, inner = [])
        {
            var store = await _router.NodeStoreAsync(nodes[index], ct).ConfigureAwait(false)
                ?? throw new KvasirException($"node {nodes[index].Id} ({nodes[index].Address}) is unreachable: its keys cannot be listed");
            var page = await store.ScanAsync(prefix, inner, pageSize, ct).ConfigureAwait(false);
            bool last = page.Done && index == nodes.Count - 1;
            byte[] next = page.Done ? (last ? [] : NodeCursor(index + 1, [])) : NodeCursor(index, page.Cursor);
            if (page.Keys.Count > 0 || last) return page with { Cursor = next };
        }
        return new KvKeyPage([], [], TierNames(WireTiers.Bit(WireTiers.Dram)));
    }

    /// <summary>Every key that starts with <paramref name="prefix"/>, fetched a page at a time (see <see cref="ScanAsync"/>).</summary>
    public async IAsyncEnumerable<KvKeyEntry> ListAsync(ReadOnlyMemory<byte> prefix, int pageSize = 1000, [EnumeratorCancellation] CancellationToken ct = default)
    {
        byte[] cursor = [];
        do
        {
            var page = await ScanAsync(prefix, cursor, pageSize, ct).ConfigureAwait(false);
            foreach (var entry in page.Keys) yield return entry;
            cursor = page.Cursor;
        }
        while (cursor.Length > 0);
    }

    /// <summary>
    /// Size, tier, age, time to live, pins, leases and namespace of each key. In a cluster each key is asked of the nodes
    /// that hold its copies, best first; the first that has it answers.
    /// </summary>
    public async Task<KvKeyInfo[]> InfoAsync(IReadOnlyList<ReadOnlyMemory<byte>> keys, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (_router is not null)
        {
            var results = new KvKeyInfo[keys.Count];
            for (int i = 0; i < keys.Count; i++)
            {
                KvKeyInfo? found = null;
                foreach (var id in Placement(keys[i].Span))
                {
                    var node = _router.Nodes.FirstOrDefault(n => n.Id == id);
                    var store = node is null ? null : await _router.NodeStoreAsync(node, ct).ConfigureAwait(false);
                    if (store is null) continue;
                    var info = (await store.InfoAsync([keys[i]], ct).ConfigureAwait(false))[0];
                    if (found is null || info.Status == KvStatus.Ok) found = info;
                    if (info.Status == KvStatus.Ok) break;
                }
                results[i] = found ?? Missing(KvStatus.Unavailable, "cluster");
            }
            return results;
        }
        var limits = _transport.Limits;
        var all = new KvKeyInfo[keys.Count];
        for (int start = 0; start < keys.Count; start += limits.MaxBatchKeys)
        {
            int end = Math.Min(keys.Count, start + limits.MaxBatchKeys);
            var valid = Enumerable.Range(start, end - start).Where(i => ValidKey(keys[i], limits)).ToList();
            foreach (int i in Enumerable.Range(start, end - start).Except(valid)) all[i] = Missing(KvStatus.InvalidKey, NodeId);
            if (valid.Count == 0) continue;
            var batch = valid.Select(i => keys[i]).ToList();
            var meta = new byte[KeyBatchRequest.Size(batch, 0, batch.Count)];
            var w = new MetaWriter(meta);
            KeyBatchRequest.Write(ref w, batch, 0, batch.Count);
            var entries = InfoReply.Read(await _transport.KeyRequestAsync(Opcode.Info, meta, ct).ConfigureAwait(false), batch.Count);
            for (int j = 0; j < valid.Count; j++) all[valid[j]] = FromWire(entries[j], NodeId);
        }
        return all;
    }

    /// <summary>
    /// Removes every key that starts with <paramref name="prefix"/> from every tier of the node (in a cluster: of every node);
    /// returns how many keys were removed. The node removes a page at a time, so writers are never blocked for long; keys
    /// written while it runs may survive. Throws <see cref="KvasirException"/> naming a node that could not do it.
    /// </summary>
    public async Task<long> RemovePrefixAsync(ReadOnlyMemory<byte> prefix, CancellationToken ct = default)
    {
        CheckPrefix(prefix);
        if (_router is not null)
        {
            await _router.ThrowIfNoNodeAsync("remove by prefix").ConfigureAwait(false);
            long total = 0;
            foreach (var node in _router.Nodes)
            {
                var store = await _router.NodeStoreAsync(node, ct).ConfigureAwait(false)
                    ?? throw new KvasirException($"node {node.Id} ({node.Address}) is unreachable: its keys were not removed");
                total += await store.RemovePrefixAsync(prefix, ct).ConfigureAwait(false);
            }
            return total;
        }
        var reply = await _transport.KeyRequestAsync(Opcode.RemovePrefix, RemovePrefixMessages.Request(prefix.Span), ct).ConfigureAwait(false);
        var (removed, failed) = RemovePrefixMessages.ReadReply(reply);
        if (failed > 0) throw new KvasirException($"node {NodeId}: {failed} keys could not be removed (a tier failed; see its health report), {removed} were");
        return removed;
    }

    /// <summary>Removes every key of the node (in a cluster: of every node); returns how many.</summary>
    public Task<long> RemoveAllAsync(CancellationToken ct = default) => RemovePrefixAsync(ReadOnlyMemory<byte>.Empty, ct);

    /// <summary>
    /// Why a PUT of <paramref name="key"/> was answered <see cref="KvStatus.QuotaExceeded"/>, in one line naming the namespace and its
    /// budget (asked of the node with INFO).
    /// </summary>
    public async Task<string> QuotaMessageAsync(ReadOnlyMemory<byte> key, CancellationToken ct = default)
    {
        var info = (await InfoAsync([key], ct).ConfigureAwait(false))[0];
        if (info.Namespace is null) return $"key '{Encoding.UTF8.GetString(key.Span)}' is over a namespace quota (node {info.Node})";
        return $"namespace '{Encoding.UTF8.GetString(info.Namespace)}' is over its DRAM budget of {info.NamespaceBudget} bytes ({info.NamespaceUsed} in DRAM on node {info.Node}; "
            + "disk and shared copies do not count): remove keys under it (kvasir rm --prefix) or raise --namespace-quota";
    }

    private void CheckPrefix(ReadOnlyMemory<byte> prefix)
    {
        int max = _router is null ? _transport.Limits.MaxKeyBytes : ProtocolLimits.MaxKeyBytes;
        if (prefix.Length > max) throw new ArgumentException($"prefix of {prefix.Length} bytes is longer than the {max}-byte key limit", nameof(prefix));
    }

    private static byte[] NodeCursor(int index, byte[] inner)
    {
        var cursor = new byte[2 + inner.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(cursor, checked((ushort)index));
        inner.CopyTo(cursor, 2);
        return cursor;
    }

    private static string TierNames(byte tiers)
        => string.Join(',', new[] { WireTiers.Dram, WireTiers.Disk, WireTiers.Shared }.Where(t => (tiers & WireTiers.Bit(t)) != 0).Select(WireTiers.Name));

    private static KvKeyInfo Missing(KvStatus status, string node) => new(status, "none", 0, TimeSpan.Zero, null, 0, 0, null, 0, 0, node);

    private static KvKeyInfo FromWire(InfoEntry e, string node) => new(
        KvStatuses.FromWire(e.Status), WireTiers.Name(e.Tier), e.Length, TimeSpan.FromMilliseconds(e.AgeMs),
        e.TtlMs == 0 ? null : TimeSpan.FromMilliseconds(e.TtlMs), (int)e.Pins, (int)e.Leases,
        e.NamespacePrefix.Length == 0 ? null : e.NamespacePrefix, e.NamespaceBudget, e.NamespaceUsed, node);
}
