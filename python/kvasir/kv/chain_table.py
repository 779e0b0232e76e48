"""ChainTable: the blocks of an LRU or FIFO EvictionManager, kept per inserted chain (issue 14).

A lookup of a cached chain costs one dict probe per run of blocks that were inserted together, not one per block:
CPython's dict cannot place a chain's blocks together, so at 1M blocks every per-block probe was a random read of an
8-16 MB index (docs/benchmarks.md, issue 14, sessions 5-7 and 12).

Layout:
* a **record** per inserted chain: its ids (``hashes``) and ``values`` in chain order, and per position its ``owner``,
  the touch that last placed it in the eviction order. A position is a block's **home** while the index names it;
  a position that is not (the block was removed, evicted, inserted again elsewhere, or repeated in its chain) holds
  ``_DEAD``, no value and no owner, and dead positions at a record's end are cut off.
* the **index**: a dict from id to its home as one int, ``record number << 20 | position`` (an int is no object the
  garbage collector tracks, where a ``(record, position)`` tuple per block made every full collection walk all of
  them: inserts ran at half the speed); records are numbered in a list, a number reused once its record holds no
  block. A chain longer than 2**20 - 1 blocks is held as several records.
* the **log**: the order, as a deque of touches ``(record, lo, hi)``, oldest first. A touch places positions
  ``hi - 1`` down to ``lo`` (a chain's tail first, so its head ends the most recent, as the per-block layout moved
  them); a position counts in the last touch that placed it (its ``owner``), so the order is: touches oldest first,
  within one its live positions from ``hi - 1`` down. Touches with no live position are dropped from the front when
  victims are read (a touch read there in which only some positions count is narrowed into touches of those runs,
  in its place, so a pinned block is not read with its whole chain again on every selection), and from the whole log
  when it has grown to twice its live length (plus 1,024), so its length
  stays within twice the live touches plus a constant and the upkeep is amortised O(1) per touch.

Operations (n blocks of a chain, r runs of it in records):
* ``lookup(ids)``: the longest held prefix: probe the first id, compare the rest against its record's ids from its
  position (one list compare in C), probe again where they stop matching; O(r) probes + O(n) C work. Under LRU one
  touch per run, appended last run first (the tail first, as the per-block moves).
* ``insert(ids, values)``: one record, one touch for the whole chain, the index updated in C. Under LRU a block
  already held moves its home into the new record (the per-block layout moved it to the back with the rest);
  under FIFO it stays where it is and only its value changes. A repeated id keeps the value of its first occurrence
  (the last one written, the chain being written tail first) at the home the per-block order gives it.
* ``touch(id)``, ``remove(id)``: O(1). ``order()``: the held ids, first victim first.

Memory: a record lives while one of its blocks does; its dead positions (3 pointers each) before its last live one
stay until then. Eviction is tail first, so a record usually shrinks from its end; the worst case is one live block
keeping a record of a long chain.

Not thread-safe: the owner (EvictionManager, under PrefixCache's lock) serialises calls.
"""
from collections import deque
from itertools import compress, repeat, takewhile
from operator import eq, is_, ne, sub, truth
from typing import Hashable, List, Sequence

__all__ = ["ChainTable"]

_DEAD = object()   # the id at a position that is no block's home (never equal to a caller's id)


_SHIFT = 20
_MASK = (1 << _SHIFT) - 1
_MAX_BLOCKS = _MASK   # per record: a position never reaches _MASK, so homes one apart are in one record


class _Record:
    __slots__ = ("hashes", "values", "owner", "number", "live")


def _dead(touch) -> bool:
    """True when no position counts in ``touch`` any more."""
    rec, lo, hi = touch
    owner = rec.owner
    if lo >= len(owner):
        return True
    o = owner[lo]
    if o is touch:
        return False
    if o is not None and o[1] <= lo and o[2] >= hi:   # a later touch placed the whole range again
        return True
    return not any(map(is_, owner[lo:hi], repeat(touch)))


class ChainTable:
    def __init__(self, lru: bool):
        self.lru = lru
        #: id -> its home, ``record number << 20 | position``; the keys are the held ids
        self.index = {}
        self._records = []   # by number; None where free
        self._free = []      # free numbers
        self._log = deque()
        self._limit = 1024       # the log is compacted past this length: twice its live length then, + 1,024

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, block_id) -> bool:
        return block_id in self.index

    def value(self, block_id):
        home = self.index[block_id]
        return self._records[home >> _SHIFT].values[home & _MASK]

    def _append(self, touch) -> None:
        self._log.append(touch)
        if len(self._log) > self._limit:
            self._compact()

    def _compact(self) -> None:
        """Drops the touches in which no position counts (``_dead``, inline: this walks the whole log)."""
        keep = deque()
        for t in self._log:
            rec, lo, hi = t
            owner = rec.owner
            if lo < len(owner):
                o = owner[lo]
                if o is t or ((o is None or o[1] > lo or o[2] < hi) and any(map(is_, owner[lo:hi], repeat(t)))):
                    keep.append(t)
        self._log = keep
        self._limit = 2 * len(keep) + 1024

    def _kill(self, home) -> None:
        """``home`` is no longer one: clear its position, cut dead positions off the record's end, free the record's
        number when it holds no block."""
        rec = self._records[home >> _SHIFT]
        pos = home & _MASK
        hs = rec.hashes
        hs[pos] = _DEAD
        rec.values[pos] = None
        rec.owner[pos] = None
        rec.live -= 1
        if rec.live == 0:
            self._records[rec.number] = None
            self._free.append(rec.number)
            rec.hashes, rec.values, rec.owner = [], [], []   # touches still in the log read it as empty
        elif pos == len(hs) - 1:
            values, owner = rec.values, rec.owner
            while hs and hs[-1] is _DEAD:
                hs.pop()
                values.pop()
                owner.pop()

    def lookup(self, ids: List[Hashable]):
        """``(hit_ids, values)`` of the longest held prefix of ``ids`` (a list); under LRU its blocks become the most
        recent, the tail first."""
        get = self.index.get
        records = self._records
        n = len(ids)
        i = 0
        values = []
        runs = []
        while i < n:
            home = get(ids[i])
            if home is None:
                break
            rec = records[home >> _SHIFT]
            pos = home & _MASK
            hs = rec.hashes
            m = min(n - i, len(hs) - pos)
            if m == 1 or hs[pos:pos + m] == ids[i:i + m]:
                k = m
            else:   # the first position is the block's home: k >= 1
                k = len(list(takewhile(truth, map(eq, hs[pos:pos + m], ids[i:i + m]))))
            values += rec.values[pos:pos + k]
            runs.append((rec, pos, pos + k))
            i += k
        if self.lru and runs:
            log = self._log
            for touch in reversed(runs):
                rec, lo, hi = touch
                rec.owner[lo:hi] = [touch] * (hi - lo)
                log.append(touch)
            if len(log) > self._limit:
                self._compact()
        return ids[:i], values

    def touch(self, block_id) -> None:
        """Under LRU the block becomes the most recent (it must be held)."""
        if self.lru:
            home = self.index[block_id]
            rec = self._records[home >> _SHIFT]
            pos = home & _MASK
            touch = (rec, pos, pos + 1)
            rec.owner[pos] = touch
            self._append(touch)

    def insert(self, ids: Sequence[Hashable], values: Sequence) -> None:
        """Holds the chain: equal in values and order to inserting ``ids[i]`` with ``values[i]`` one by one from the
        last to the first, each new one at the back and, under LRU, each held one moved to the back."""
        n = len(ids)
        if n > _MAX_BLOCKS:   # in records of _MAX_BLOCKS, the last first: the same one-by-one order
            for lo in reversed(range(0, n, _MAX_BLOCKS)):
                self.insert(ids[lo:lo + _MAX_BLOCKS], values[lo:lo + _MAX_BLOCKS])
            return
        if n == 0:
            return
        index = self.index
        rec = _Record()
        rec.hashes = hs = list(ids)
        rec.values = list(values)
        touch = (rec, 0, n)
        rec.owner = [touch] * n
        rec.number = number = self._free.pop() if self._free else len(self._records)
        if number == len(self._records):
            self._records.append(rec)
        else:
            self._records[number] = rec
        base = number << _SHIFT
        held = [h for h in hs if h in index] if any(map(index.__contains__, hs)) else ()
        repeats = len(set(hs)) != n
        if self.lru:
            for h in dict.fromkeys(held) if repeats else held:   # held blocks move home into this record
                self._kill(index[h])
            index.update(zip(reversed(hs), range(base + n - 1, base - 1, -1)))   # a repeat: its first position
            dead = [pos for pos, h in enumerate(hs) if index[h] != base + pos] if repeats else ()
        elif held or repeats:   # FIFO: held blocks keep their place; a repeated new one is placed at its last position
            first = {}
            for pos in range(n - 1, -1, -1):
                first[hs[pos]] = pos          # ends at each id's first position: the value written last
            was = set(held)
            homes = {}
            for pos, h in enumerate(hs):
                if h not in was:
                    homes[h] = pos            # ends at its last position: the one placed first
            for h in was:
                home = index[h]
                self._records[home >> _SHIFT].values[home & _MASK] = values[first[h]]
            for h, pos in homes.items():
                rec.values[pos] = values[first[h]]
                index[h] = base + pos
            dead = [pos for pos, h in enumerate(hs) if homes.get(h, -1) != pos]
        else:
            index.update(zip(hs, range(base, base + n)))
            dead = ()
        for pos in dead:
            hs[pos] = _DEAD
            rec.values[pos] = None
            rec.owner[pos] = None
        rec.live = n - len(dead)
        if rec.live == 0:   # FIFO: every block was held already
            self._records[number] = None
            self._free.append(number)
            return
        while hs[-1] is _DEAD:
            hs.pop()
            rec.values.pop()
            rec.owner.pop()
        self._append(touch)

    def remove(self, block_id) -> bool:
        """Stops holding the block; False when it was not held."""
        home = self.index.pop(block_id, None)
        if home is None:
            return False
        self._kill(home)
        return True

    def remove_many(self, ids) -> None:
        """``remove`` of each id. Victims come as runs of positions of one record, the tail first (``victims``), so
        each run is cleared with slice assignments in C; each record it empties is freed and the others cut short."""
        homes = list(map(self.index.pop, ids, repeat(None)))
        if any(map(is_, homes, repeat(None))):
            homes = [h for h in homes if h is not None]
        if not homes:
            return
        records = self._records
        n = len(homes)
        # where a run ends: the next home is not the position before in the same record
        ends = list(compress(range(n - 1), map(ne, map(sub, homes[:-1], homes[1:]), repeat(1))))
        ends.append(n - 1)
        changed = []
        i = 0
        for j in ends:
            top = homes[i]
            rec = records[top >> _SHIFT]   # a run is in one record: no position is _MASK (_MAX_BLOCKS)
            lo, hi = homes[j] & _MASK, (top & _MASK) + 1
            k = hi - lo
            rec.hashes[lo:hi] = [_DEAD] * k
            rec.values[lo:hi] = [None] * k
            rec.owner[lo:hi] = [None] * k
            rec.live -= k
            changed.append(rec)
            i = j + 1
        for rec in dict.fromkeys(changed):
            hs = rec.hashes
            if rec.live == 0:
                records[rec.number] = None
                self._free.append(rec.number)
                rec.hashes, rec.values, rec.owner = [], [], []
            elif hs[-1] is _DEAD:
                values, owner = rec.values, rec.owner
                while hs[-1] is _DEAD:
                    hs.pop()
                    values.pop()
                    owner.pop()

    def victims(self, n: int, skip) -> List[Hashable]:
        """The first n held ids in order that are not in ``skip`` (fewer when there are not so many).

        Reads O(victims + skipped) positions past the touches' checks (one C pass over each touch read): a touch is read
        from its end only as far as the victims wanted, and a touch in which only some positions count (the rest placed
        again later, or gone) is narrowed, once, into touches of the runs that still count, in its place in the log. So a
        pinned block is skipped at the cost of itself, not of the chain it was inserted with, on every selection."""
        log = self._log
        out = []
        read = []   # the touches taken off the front of the log, dead ones left out: put back in order
        try:
            while log and len(out) < n:
                touch = log.popleft()
                rec, lo, hi = touch
                owner = rec.owner
                top = min(hi, len(owner))
                if top <= lo:
                    continue
                if owner[lo] is touch and owner[top - 1] is touch and all(map(is_, owner[lo:top], repeat(touch))):
                    parts = ((lo, top),)
                    read.append(touch)
                else:
                    o = owner[lo]
                    if o is not None and o is not touch and o[1] <= lo and o[2] >= hi:
                        continue   # a later touch placed the whole range again: dead
                    parts = self._narrow(touch, top)
                    read += [(rec, a, b) for a, b in parts]
                    for t in read[len(read) - len(parts):]:
                        owner[t[1]:t[2]] = [t] * (t[2] - t[1])
                hs = rec.hashes
                for a, b in parts:
                    need = n - len(out)
                    if need <= 0:
                        break
                    if not skip:
                        run = hs[max(a, b - need):b]
                        run.reverse()
                        out += run
                        continue
                    for pos in range(b - 1, a - 1, -1):
                        h = hs[pos]
                        if h not in skip:
                            out.append(h)
                            if len(out) == n:
                                break
        finally:
            log.extendleft(reversed(read))
        return out

    @staticmethod
    def _narrow(touch, top):
        """The runs ``(a, b)`` of positions below ``top`` that count in ``touch``, highest first."""
        rec, lo, _ = touch
        mine = list(compress(range(lo, top), map(is_, rec.owner[lo:top], repeat(touch))))
        parts = []
        for pos in reversed(mine):
            if parts and parts[-1][0] == pos + 1:
                parts[-1] = (pos, parts[-1][1])
            else:
                parts.append((pos, pos + 1))
        return parts

    def order(self):
        """The held ids, first victim first (an iterator: do not change the table while iterating)."""
        log = self._log
        while log and _dead(log[0]):
            log.popleft()
        for touch in log:
            rec, lo, hi = touch
            owner = rec.owner
            hs = rec.hashes
            for pos in range(min(hi, len(owner)) - 1, lo - 1, -1):
                if owner[pos] is touch:
                    yield hs[pos]
