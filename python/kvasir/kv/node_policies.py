"""The node's eviction policies on the engine side: ``"lfu"``, ``"s3fifo"``, ``"chainlfu"``, ``"chainsketch"``.

The same algorithms and parameters as the node's (src/Kvasir.Storage/Internal, docs/eviction.md) and as .NET
Kvasir.Prefix, called in the order the node calls them (store a block: link it to its parent, then insert; store it
again: relink, then access; read it: access; evict: pick, then remove), so that a PrefixCache makes the node's choices
on the same requests: tests/vectors/eviction_trace.json holds the node simulator's hit counts on a production trace
slice, and the tests replay it. An EvictionManager keeps these policies by block id (it calls ``insert``, ``reinsert``,
``access``, ``remove``, ``pick`` and ``peek``); pinned blocks are passed over by ``pick``, as the node passes over a
leased one.

* ``LFUPolicy``: LFU with dynamic aging (LFU-DA): priority = age + reads (1 at insert, capped at 65,535); the lowest
  goes first and its priority becomes the age. O(log n) per operation (a binary heap with lazy deletion).
* ``S3FIFOPolicy``: a small FIFO (searched while it holds a tenth of the blocks), a main FIFO with up to three second
  chances, a ghost queue of keys dropped from the small one (at most one per block). O(1) amortised.
* ``ChainLFUPolicy(remember=False)``: LFU-DA whose value is 1 + reads (capped at 8) + 1 while a cached block continues
  this one, 0 for a block whose parent is gone; so a chain is evicted from its tail. ``remember=True``
  (``"chainsketch"``) also counts reads in a frequency sketch that outlives the blocks. O(log n) per operation.

The ghost queue and the sketch index a block by 64 bits of its id: the first 16 hex digits of a block hash (what the
node's FNV-1a of a key is to its policies); another id by its Python hash.
"""
import heapq
from collections import OrderedDict, deque
from typing import Callable, Hashable, List, Optional

__all__ = ["NodePolicy", "LFUPolicy", "S3FIFOPolicy", "ChainLFUPolicy", "FrequencySketch"]

_MASK = (1 << 64) - 1


def key64(block_id) -> int:
    """64 bits of a block id: a hex block hash's first 8 bytes (big-endian), else the id's hash."""
    if isinstance(block_id, str) and len(block_id) >= 16:
        try:
            return int(block_id[:16], 16)
        except ValueError:
            pass
    return hash(block_id) & _MASK


class NodePolicy:
    """Base of the node's policies (see the module). Not thread-safe: the owner serialises calls."""

    name = "node"

    def insert(self, block_id, parent=None) -> None:
        raise NotImplementedError

    def reinsert(self, block_id, parent=None) -> None:
        """A held block stored again, now continuing ``parent``: the node's overwrite."""
        self.access(block_id)

    def access(self, block_id) -> None:
        raise NotImplementedError

    def remove(self, block_id, evicted: bool = False) -> None:
        raise NotImplementedError

    def pick(self, can_evict: Callable[[Hashable], bool]):
        """The next victim ``can_evict`` accepts, or None when this search found none."""
        raise NotImplementedError

    def peek(self, n: int, can_evict: Callable[[Hashable], bool]) -> List[Hashable]:
        """The next n victims without removing them (the caller checked that as many are evictable)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __contains__(self, block_id) -> bool:
        raise NotImplementedError


class _HeapPolicy(NodePolicy):
    """Lowest (priority, stamp) first. A heap of (priority, stamp, id) entries; an entry counts only while it matches
    the block's current priority and stamp (stamps are unique), so an update is one push and a removal none."""

    def __init__(self):
        self._pri = {}
        self._stamp = {}
        self._heap = []
        self._age = 0
        self._clock = 0

    def __len__(self):
        return len(self._pri)

    def __contains__(self, block_id):
        return block_id in self._pri

    def _set(self, block_id, priority) -> None:
        self._clock += 1
        self._pri[block_id] = priority
        self._stamp[block_id] = self._clock
        self._push(block_id)

    def _push(self, block_id) -> None:
        heap = self._heap
        heapq.heappush(heap, (self._pri[block_id], self._stamp[block_id], block_id))
        if len(heap) > 2 * len(self._pri) + 64:   # drop the dead entries: O(n) once per n updates
            self._heap = [(self._pri[b], self._stamp[b], b) for b in self._pri]
            heapq.heapify(self._heap)

    def _live(self, entry) -> bool:
        p, s, b = entry
        return self._stamp.get(b) == s and self._pri[b] == p

    def _drop(self, block_id, evicted) -> None:
        p = self._pri.pop(block_id, None)
        if p is None:
            return
        del self._stamp[block_id]
        if evicted:
            self._age = max(self._age, p)

    def pick(self, can_evict):
        heap, passed, victim = self._heap, [], None
        while heap:
            entry = heap[0]
            if not self._live(entry):
                heapq.heappop(heap)
            elif can_evict(entry[2]):
                victim = entry[2]
                break
            else:
                passed.append(heapq.heappop(heap))
        for entry in passed:
            heapq.heappush(heap, entry)
        return victim

    def peek(self, n, can_evict):
        heap, passed, out, seen = self._heap, [], [], set()
        while heap and len(out) < n:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            passed.append(entry)
            b = entry[2]
            if b not in seen and can_evict(b):
                seen.add(b)
                out.append(b)
        for entry in passed:
            heapq.heappush(heap, entry)
        return out


class LFUPolicy(_HeapPolicy):
    """LFU with dynamic aging, the node's ``lfu``."""

    name = "lfu"
    MAX_FREQUENCY = 65535

    def __init__(self):
        super().__init__()
        self._freq = {}

    def insert(self, block_id, parent=None):
        self._freq[block_id] = 1
        self._set(block_id, self._age + 1)

    def access(self, block_id):
        f = self._freq.get(block_id)
        if f is None:
            return
        f = min(f + 1, self.MAX_FREQUENCY)
        self._freq[block_id] = f
        self._set(block_id, self._age + f)

    def remove(self, block_id, evicted=False):
        self._drop(block_id, evicted)
        self._freq.pop(block_id, None)


class FrequencySketch:
    """The node's count-min sketch (4 rows of counters saturating at 15, conservative update, all halved after
    10 x width increments; width at least twice the blocks tracked, a power of two, emptied when it grows)."""

    MAX_COUNT = 15
    AGING_FACTOR = 10
    _SEEDS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)

    def __init__(self):
        self.width = 64
        self._shift = 64 - 6
        self._rows = [bytearray(64) for _ in range(4)]
        self._increments = 0

    def fit(self, keys: int) -> None:
        if keys * 2 <= self.width:
            return
        width = min(1 << 30, 1 << (keys * 2 - 1).bit_length())
        if width == self.width:
            return
        self.width = width
        self._shift = 64 - (width.bit_length() - 1)
        self._rows = [bytearray(width) for _ in range(4)]
        self._increments = 0

    def _cells(self, key):
        shift = self._shift
        return [((key * seed) & _MASK) >> shift for seed in self._SEEDS]

    def estimate(self, key: int) -> int:
        return min(row[i] for row, i in zip(self._rows, self._cells(key)))

    def increment(self, key: int) -> None:
        cells = self._cells(key)
        rows = self._rows
        least = min(row[i] for row, i in zip(rows, cells))
        if least < self.MAX_COUNT:
            for row, i in zip(rows, cells):
                if row[i] == least:
                    row[i] += 1
        self._increments += 1
        if self._increments >= self.AGING_FACTOR * self.width:
            self._increments = 0
            self._rows = [bytearray(c >> 1 for c in row) for row in rows]


class ChainLFUPolicy(_HeapPolicy):
    """Chain-aware LFU with dynamic aging, the node's default ``chainlfu`` (``remember=True``: ``chainsketch``)."""

    MAX_FREQUENCY = 8
    MAX_ANCESTOR_WALK = 1 << 16

    def __init__(self, remember: bool = False):
        super().__init__()
        self.remember = remember
        self.name = "chainsketch" if remember else "chainlfu"
        self._history = FrequencySketch() if remember else None
        self._freq = {}
        self._inc = {}        # block -> its incarnation (a new one at each insert)
        self._parent = {}     # block -> (parent, the parent's incarnation when linked): live while they match
        self._children = {}   # block -> live blocks linked to it
        self._incarnations = 0

    def _live_parent(self, block_id):
        link = self._parent.get(block_id)
        if link is not None and self._inc.get(link[0]) == link[1]:
            return link[0]
        return None

    def _value(self, block_id) -> int:
        if block_id in self._parent and self._live_parent(block_id) is None:
            return 0   # its parent is gone: it can never be hit again
        return 1 + self._freq[block_id] + (1 if self._children[block_id] else 0)

    def _place(self, block_id) -> None:
        self._set(block_id, self._age + self._value(block_id))

    def _children_changed(self, block_id) -> None:
        if block_id in self._pri:   # keeps its stamp: gains or loses the continuation's 1
            self._pri[block_id] += 1 if self._children[block_id] else -1
            self._push(block_id)

    def _is_ancestor(self, candidate, descendant) -> bool:
        current, steps = descendant, 0
        while current is not None:
            if current == candidate or steps >= self.MAX_ANCESTOR_WALK:
                return True
            current = self._live_parent(current)
            steps += 1
        return False

    def _detach(self, block_id) -> None:
        parent = self._live_parent(block_id)
        self._parent.pop(block_id, None)
        if parent is not None:
            self._children[parent] -= 1
            if self._children[parent] == 0:
                self._children_changed(parent)

    def _set_parent(self, block_id, parent) -> None:
        if parent is not None and (parent == block_id or parent not in self._inc
                                   or (self._children[block_id] and self._is_ancestor(block_id, parent))):
            parent = None
        if self._live_parent(block_id) == parent:
            return   # unchanged; a dead link stays dead when the block is stored again as a root
        self._detach(block_id)
        if parent is not None:
            self._parent[block_id] = (parent, self._inc[parent])
            self._children[parent] += 1
            if self._children[parent] == 1:
                self._children_changed(parent)

    def insert(self, block_id, parent=None):
        self._incarnations += 1
        self._inc[block_id] = self._incarnations
        self._children[block_id] = 0
        self._set_parent(block_id, parent)
        if self._history is None:
            self._freq[block_id] = 0
        else:
            self._history.fit(len(self._pri) + 1)
            self._freq[block_id] = min(self._history.estimate(key64(block_id)), self.MAX_FREQUENCY)
        self._place(block_id)

    def reinsert(self, block_id, parent=None):
        self._set_parent(block_id, parent)
        self.access(block_id)

    def access(self, block_id):
        if block_id not in self._inc:
            return
        self._freq[block_id] = min(self._freq[block_id] + 1, self.MAX_FREQUENCY)
        if self._history is not None:
            self._history.increment(key64(block_id))
        self._place(block_id)

    def remove(self, block_id, evicted=False):
        if block_id not in self._inc:
            return
        self._drop(block_id, evicted)
        self._detach(block_id)
        del self._inc[block_id], self._freq[block_id], self._children[block_id]


class _Ghost:
    """S3-FIFO's ghost queue: the last ``limit`` keys added, with a count per key; a key found stays until it ages out."""

    def __init__(self):
        self._order = deque()
        self._present = {}

    def add(self, key, limit) -> None:
        self._order.append(key)
        self._present[key] = self._present.get(key, 0) + 1
        while len(self._order) > limit:
            old = self._order.popleft()
            n = self._present[old] - 1
            if n:
                self._present[old] = n
            else:
                del self._present[old]

    def __contains__(self, key) -> bool:
        return key in self._present


class S3FIFOPolicy(NodePolicy):
    """S3-FIFO (Yang et al., SOSP 2023), the node's ``s3fifo``. Queues are OrderedDicts, oldest first."""

    name = "s3fifo"
    MAX_FREQUENCY = 3
    SCAN_LIMIT = 1024

    def __init__(self):
        self._small: "OrderedDict[Hashable, None]" = OrderedDict()
        self._main: "OrderedDict[Hashable, None]" = OrderedDict()
        self._freq = {}
        self._ghost = _Ghost()

    def __len__(self):
        return len(self._freq)

    def __contains__(self, block_id):
        return block_id in self._freq

    def insert(self, block_id, parent=None):
        self._freq[block_id] = 0
        (self._main if key64(block_id) in self._ghost else self._small)[block_id] = None

    def access(self, block_id):
        f = self._freq.get(block_id)
        if f is not None and f < self.MAX_FREQUENCY:
            self._freq[block_id] = f + 1

    def remove(self, block_id, evicted=False):
        if block_id not in self._freq:
            return
        if block_id in self._small:
            if evicted:
                self._ghost.add(key64(block_id), max(len(self._small) + len(self._main), 1))
            del self._small[block_id]
        else:
            del self._main[block_id]
        del self._freq[block_id]

    def pick(self, can_evict):
        small, main, freq = self._small, self._main, self._freq
        budget = min(4 * (len(small) + len(main)) + 1, 4 * self.SCAN_LIMIT)
        i = 0
        refused_in_main = 0   # main blocks refused in a row: once all of main is pinned, small is searched
        while i < budget and (small or main):
            from_small = bool(small) and (not main or len(small) * 10 >= len(small) + len(main)
                                          or refused_in_main >= len(main))
            queue = small if from_small else main
            b = next(iter(queue))
            last_chance = i >= budget - 1
            i += 1
            if freq[b] > 0 and not last_chance:
                if from_small:   # read while on probation: promoted
                    del small[b]
                    freq[b] = 0
                    main[b] = None
                else:            # a second chance spent
                    refused_in_main = 0
                    freq[b] -= 1
                    main.move_to_end(b)
            elif can_evict(b):
                return b
            else:   # refused (pinned): to main's new end, as the node puts a block back when it is unpinned
                if not from_small:
                    refused_in_main += 1   # a small queue too small to be chosen may hold the only unpinned blocks
                del queue[b]
                main[b] = None
        return None

    def peek(self, n, can_evict):
        aside = []
        while len(aside) < n:
            b = self.pick(can_evict)
            if b is None:
                continue   # a search that spent its budget on pinned blocks moved them on
            queue = self._small if b in self._small else self._main
            del queue[b]
            aside.append((b, queue))
        for b, queue in reversed(aside):   # back to the old ends, first victim first
            queue[b] = None
            queue.move_to_end(b, last=False)
        return [b for b, _ in aside]
