using Kvasir.Shared;

namespace Kvasir.Prefix.Internal;

/// <summary>
/// S3-FIFO (Yang et al., SOSP 2023), the node's <c>s3fifo</c>: new blocks enter a small FIFO; one read there promotes a
/// block to the main FIFO when it reaches the small queue's end, else it is evicted and its key remembered in a ghost
/// queue (at most as many keys as blocks), and a block stored while its key is remembered enters main directly. Main
/// gives up to three second chances (a read adds one, a pass over its end spends one). The small queue is the one
/// searched while it holds a tenth of the blocks or more. O(1) amortised per operation; 10 bytes a slot (two links, the
/// queue and the count) plus the ghost queue's 8 bytes and map entry per remembered key.
/// </summary>
internal sealed class S3FifoOrder : SlotOrder
{
    private const byte InSmall = 1;
    private const byte InMain = 2;
    private const int MaxFrequency = 3;
    private const int ScanLimit = 1024;

    private readonly Queue _small = new(), _main = new();
    private readonly GhostKeys _ghost = new();
    private int[] _prev = [], _next = [];
    private byte[] _queue = [], _frequency = [];
    private readonly List<(int Slot, byte Queue)> _aside = [];

    private int Candidates => _small.Count + _main.Count;

    public override void Resize(int slots)
    {
        if (slots <= _prev.Length) return;
        Array.Resize(ref _prev, slots);
        Array.Resize(ref _next, slots);
        Array.Resize(ref _queue, slots);
        Array.Resize(ref _frequency, slots);
    }

    public override void Insert(int slot, ulong key, int parent)
    {
        _frequency[slot] = 0;
        AddNewest(_ghost.Contains(key) ? InMain : InSmall, slot);
    }

    public override void Access(int slot, ulong key) => _frequency[slot] = (byte)Math.Min(_frequency[slot] + 1, MaxFrequency);

    public override void Remove(int slot, ulong key, bool evicted)
    {
        if (evicted && _queue[slot] == InSmall) _ghost.Add(key, Math.Max(Candidates, 1));
        Unlink(slot);
    }

    public override long BytesFor(int slots) => (long)slots * (4 + 4 + 1 + 1);

    public override int Pick(Func<int, bool> canEvict)
    {
        // As the node: each pass evicts, promotes a block out of small, spends a main block's chance or passes over a
        // refused (pinned) one; past the budget the oldest acceptable block goes regardless.
        int budget = Math.Min((4 * Candidates) + 1, 4 * ScanLimit);
        int refusedInMain = 0;   // main blocks refused in a row: once all of main is pinned, small is searched
        for (int i = 0; i < budget && Candidates > 0; i++)
        {
            bool fromSmall = _small.Count > 0 && (_main.Count == 0 || _small.Count * 10 >= Candidates || refusedInMain >= _main.Count);
            int slot = fromSmall ? _small.Oldest : _main.Oldest;
            bool lastChance = i >= budget - 1;
            if (fromSmall && _frequency[slot] > 0 && !lastChance)
            {
                Unlink(slot);
                _frequency[slot] = 0;
                AddNewest(InMain, slot);
            }
            else if (!fromSmall && _frequency[slot] > 0 && !lastChance)
            {
                refusedInMain = 0;
                _frequency[slot]--;
                Unlink(slot);
                AddNewest(InMain, slot);
            }
            else if (canEvict(slot))
            {
                return slot;
            }
            else
            {
                // Refused (pinned): to main's new end. The node takes a pinned block out of both queues and puts it back
                // into main when unpinned; moving it to main now keeps a small queue of pinned blocks from holding up
                // every search (the small queue is chosen by its share alone). A small queue whose share is too low to be
                // chosen is searched once main has been refused all round: its blocks may be the only unpinned ones
                // (the search found none, and the caller, told one exists, searched again for ever: NodePolicyTests).
                if (!fromSmall) refusedInMain++;
                Unlink(slot);
                AddNewest(InMain, slot);
            }
        }
        return -1;
    }

    // Each victim is set aside while the next is searched for, then all go back to the old ends of their queues in
    // their order: the queues end as the searches left them, the victims first in line.
    public override void Peek(int count, Func<int, bool> canEvict, List<int> into)
    {
        _aside.Clear();
        while (into.Count < count)
        {
            int slot = Pick(canEvict);
            if (slot < 0) continue;   // a search that spent its budget on pinned blocks moved them; search again
            into.Add(slot);
            _aside.Add((slot, _queue[slot]));
            Unlink(slot);
        }
        for (int i = _aside.Count - 1; i >= 0; i--) AddOldest(_aside[i].Queue, _aside[i].Slot);
    }

    private Queue Of(byte queue) => queue == InSmall ? _small : _main;

    private void AddNewest(byte queue, int slot)
    {
        var q = Of(queue);
        _queue[slot] = queue;
        _prev[slot] = -1;
        _next[slot] = q.Newest;
        if (q.Newest >= 0) _prev[q.Newest] = slot;
        else q.Oldest = slot;
        q.Newest = slot;
        q.Count++;
    }

    private void AddOldest(byte queue, int slot)
    {
        var q = Of(queue);
        _queue[slot] = queue;
        _next[slot] = -1;
        _prev[slot] = q.Oldest;
        if (q.Oldest >= 0) _next[q.Oldest] = slot;
        else q.Newest = slot;
        q.Oldest = slot;
        q.Count++;
    }

    private void Unlink(int slot)
    {
        if (_queue[slot] == 0) return;
        var q = Of(_queue[slot]);
        int prev = _prev[slot], next = _next[slot];
        if (prev >= 0) _next[prev] = next;
        else q.Newest = next;
        if (next >= 0) _prev[next] = prev;
        else q.Oldest = prev;
        q.Count--;
        _queue[slot] = 0;
    }

    /// <summary>A doubly linked FIFO over the slot arrays: prev points toward the newest end, next toward the oldest.</summary>
    private sealed class Queue
    {
        public int Newest = -1, Oldest = -1, Count;
    }
}
