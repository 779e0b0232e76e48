"""Stores into a node on this host straight through its shared-memory arena: ``KvStore.batch_put_from_local`` and
``batch_put_from_multi_buffers_local`` reserve arena space (ALLOC), copy the values in from host or GPU memory and
publish them (COMMIT), as a pipeline on the connection (see :class:`_LocalPut`). The copy plan is the one loads use
(:mod:`.local_load`)."""

import bisect
import ctypes
import struct
import time
from collections import deque
from typing import List, Optional

from . import errors as E
from . import protocol as P
from . import reserve
from . import shm
from .connection import _code, _Failure
from .errors import ProtocolError
from .local_load import (KeyNotLocalError, _Copies, _dtypes, _entries, _id_list, _KeyBytes, _local_connection, _need_numpy,
                         _Pieces, _single_pieces, _starts)

try:
    import numpy as np
except ImportError:   # the rest of the client needs no numpy; these calls do
    np = None


# --- stores ----------------------------------------------------------------------------------------------

def put_local(store, keys, addrs_per_key, sizes_per_key, chain: bool = False, chain_parent=None) -> List[int]:
    """KvStore.batch_put_from_multi_buffers_local (see there): each value gathered from its pieces."""
    _need_numpy()
    if not (len(keys) == len(addrs_per_key) == len(sizes_per_key)):
        raise ValueError(f"{len(keys)} keys but {len(addrs_per_key)} address lists and {len(sizes_per_key)} size lists")
    return _put(store, keys, lambda: _Pieces(store, addrs_per_key, sizes_per_key), chain, chain_parent)


def put_local_single(store, keys, ptrs, sizes, chain: bool = False, chain_parent=None) -> List[int]:
    """KvStore.batch_put_from_local (see there): one piece per value."""
    _need_numpy()
    if not (len(keys) == len(ptrs) == len(sizes)):
        raise ValueError(f"{len(keys)} keys but {len(ptrs)} addresses and {len(sizes)} sizes")
    return _put(store, keys, lambda: _single_pieces(store, ptrs, sizes), chain, chain_parent)


_PENDING = 1   # a result not settled yet (every code is 0 or negative)


def _put(store, keys, make_pieces, chain: bool = False, chain_parent=None) -> List[int]:
    key_bytes = _KeyBytes(keys)
    if chain_parent is not None and not chain:
        raise ValueError("chain_parent needs chain=True")
    results = np.full(len(key_bytes), E.INVALID_KEY, dtype=np.int64)
    # ALLOC and COMMIT of one reservation go on one connection, in that order; the store's lock is held only while
    # buffers and the connection are looked up.
    with store._lock:
        pieces = make_pieces()
    conn, mapping = _local_connection(store, KeyNotLocalError)
    hello = store.hello
    todo = np.flatnonzero((key_bytes.length >= 1) & (key_bytes.length <= hello.max_key_bytes))
    results[todo] = _PENDING
    put = _LocalPut(conn, mapping, key_bytes, pieces, results)
    if chain and conn.hello.features & P.FEATURE_COMMIT_CHAIN:
        put.chain = True
        put.chain_parent = None if chain_parent is None else _KeyBytes([chain_parent]).key(0)
    try:
        # ALLOC: u32 count, then key and u64 length each; then the TTL and proof suffix
        put.run(todo, hello.max_batch_keys, hello.max_meta_bytes - 4 - P.ARENA_PROOF_BYTES)
    except (_Failure, ProtocolError) as ex:
        put.abandon()
        store._drop(conn)              # the node aborts the connection's reservations
        store.last_error = str(ex)
        put._end_relink()              # keys being stored again were stored once already: that value stays
        results[results == _PENDING] = ex.code if isinstance(ex, _Failure) else E.PROTOCOL_ERROR
    except BaseException:
        put.abandon()
        store._drop(conn)
        raise
    finally:
        put.pin = None   # every copy has ended (run committed or abandon synchronized them)
    return results.tolist()


def _code_table(not_found: int):
    """Per wire status (a reply's u8): the client's code; OK is 0 and NOT_FOUND ``not_found``."""
    table = np.array([_code(st) for st in range(256)], dtype=np.int64)
    table[P.WireStatus.OK], table[P.WireStatus.NOT_FOUND] = E.OK, not_found
    return table


_ALLOC_CODES = _COMMIT_CODES = None


def _tables():
    global _ALLOC_CODES, _COMMIT_CODES
    if _ALLOC_CODES is None:
        # a COMMIT answering NOT_FOUND: the reservation expired before it came (nothing was published)
        _ALLOC_CODES, _COMMIT_CODES = _code_table(E.NOT_FOUND), _code_table(E.TIMEOUT)
    return _ALLOC_CODES, _COMMIT_CODES


class _LocalPut:
    """One ``put_local``: chunks of keys reserved (ALLOC), copied in from local memory (DMA for GPU sources) and
    published (COMMIT), as a pipeline on the connection. Up to two ALLOCs are on the wire ahead of the chunk whose
    copies run, so the GPU never waits for a round trip; a chunk's COMMIT is sent once its copies ended, and its
    reply read when it comes (the budget's bytes are returned then). Everything reserved stays within the
    connection's reservation budget (:mod:`.reserve`); keys refused for the share are asked for again before the rest
    of the call (a chain's next chunk continues them), each run of a chain's keys committed as a chain.

    A chain's keys are published in call order: a run whose keys continue a key refused for the share and not stored
    yet (a smaller value of the same ALLOC, or of an ALLOC sent ahead, fitted where it did not) waits, reserved and
    copied, until that key's COMMIT is sent (before, it was published continuing a key not stored: a root in the middle
    of the chain). If the waiting runs hold the space that key needs (the node refuses it again while they wait), they
    are published at once (the first key of each such run a root), the key is asked for again after them, and once the
    rest of the call is stored, the first key of each such run whose parent got stored is stored again continuing it
    (one ALLOC, copy and COMMIT per break: an overwrite relinks a key and keeps the keys after it linked to it).

    Per chunk, not per key: the ALLOC's metadata is built from the call's encoded keys with numpy, both replies are
    read as arrays, and codes are written into one array of results; no Python object is made per key."""

    def __init__(self, conn, mapping, key_bytes, pieces, results):
        self.conn, self.mapping, self.key_bytes, self.pieces, self.results = conn, mapping, key_bytes, pieces, results
        self.lengths = pieces.capacity
        self.budget = reserve.budget_of(conn, mapping)
        self.pin = mapping.pin()   # the arena stays mapped while this put copies into it, even if the store is closed
        self.base = ctypes.addressof(self.pin)
        self.ahead = 2 if conn.pipelined else 1   # over TLS one request at a time: no ALLOC ahead, COMMITs read at once
        self.pending = deque()    # ALLOCs sent: (waiter, keys, monotonic time sent, bytes, bytes others held)
        self.copying = deque()    # chunks whose copies run: (copies, reservation ids, their keys, bytes)
        self.committing = deque()   # COMMITs sent: (waiter, keys, bytes)
        self.retry = []           # arrays of keys refused for the connection's share
        self.deferred = deque()   # a chain's runs copied but waiting for earlier keys: (reservation ids, keys, bytes)
        self.sent = np.zeros(len(results), dtype=bool)   # keys whose COMMIT is sent
        self.chain = False        # COMMITs declare the keys a chain in call order (feature FEATURE_COMMIT_CHAIN)
        self.chain_parent = None  # the stored key the call's first key continues (bytes), with chain
        self.relink = []          # keys published before the key they continue (forced): stored again after it
        self.relinking = None     # the keys being stored again (once, at the end of the call), an array

    def run(self, todo, max_keys: int, max_meta: int) -> None:
        """Stores the keys ``todo`` (an array of positions), in ALLOCs of at most ``max_keys`` keys and ``max_meta``
        bytes of entries (the u32 count included)."""
        def plan(keys, cap, first=None):
            return deque(keys[a:b] for a, b in _plan(self.key_bytes.length[keys], self.lengths[keys], max_keys, max_meta,
                                                     cap, first, bool(_RAMP_UP), bool(_RAMP_DOWN)))

        queue = plan(todo, max(1, min(_STORE_CHUNK_BYTES, self.budget.limit // (self.ahead + 1))), _FIRST_CHUNK_BYTES)
        while True:
            self._collect_commits(block=False)
            while queue and len(self.pending) < self.ahead and self._send_alloc(queue[0]):
                queue.popleft()
            if self.pending:
                self._take_alloc()
                if self.retry:
                    # Keys refused for the share are asked for again in their places among the rest of the call, in
                    # chunks of the share learnt: a chain's next chunk continues the key before it, which must be stored
                    # first (asked for after the rest, they left the chain broken at both ends).
                    keys, self.retry = np.sort(np.concatenate([*self.retry, *queue])), []
                    queue = plan(keys, max(1, self.budget.limit // (self.ahead + 1)))
                while len(self.copying) > 1:   # the newest chunk's copies run on; the older ones are done or nearly
                    self._commit()
            elif self.copying:
                self._commit()
            elif self.committing:
                self._collect_commits(block=True)
            elif self.deferred and queue and queue[0][0] < self.deferred[0][1][0]:
                # Only runs waiting for the keys of queue[0] are held, and the budget has no room for those keys: ask
                # anyway (the budget learnt the bytes held when a key was refused; the node's share may be larger).
                self._send_alloc(queue.popleft(), force=True)
            elif self.deferred:
                self._publish_deferred(force=True)   # nothing they wait for is left to ask for
            elif queue:
                continue   # nothing of this put is held now: the next ALLOC waits for other threads' bytes
            elif self.relink and self.relinking is None:
                queue = plan(self._start_relink(), max(1, self.budget.limit // (self.ahead + 1)))
            else:
                self._end_relink()
                return

    def _start_relink(self):
        """The keys a forced publish left unlinked whose parent has been stored since, to store again continuing it: an
        overwrite relinks the key and keeps the keys after it linked to it. Marked pending until their COMMITs answer."""
        keys = np.unique(np.asarray(self.relink, dtype=np.int64))
        keys = keys[(self.results[keys] == E.OK) & (self.results[keys - 1] == E.OK)]
        self.relink, self.relinking = [], keys
        self.results[keys], self.sent[keys] = _PENDING, False
        return keys

    def _end_relink(self) -> None:
        """Stored either way: the relinked value, or (its second store failed) the first one, unlinked as before."""
        if self.relinking is not None:
            self.results[self.relinking] = E.OK

    def _send_alloc(self, idx, force: bool = False) -> bool:
        lengths = self.lengths[idx]
        size = int(lengths.sum())
        mine = bool(self.pending or self.copying or self.committing or self.deferred)
        others = self.budget.acquire(size, wait=not mine, broken=lambda: self.conn.broken, force=force)
        if others is None:
            return False
        try:
            sent = time.monotonic()
            flags, suffix = shm.alloc_suffix(self.conn)
            meta = self.key_bytes.frame(idx, lengths.astype("<u8").view(np.uint8).reshape(-1, 8), suffix)
            w = self.conn.send_request(P.Opcode.ALLOC, meta, flags=flags, decode=False)
        except BaseException:
            self.budget.release(size)
            raise
        # bytes this put holds count as others' for the share (they are this connection's too)
        self.pending.append((w, idx, sent, size, others))
        return True

    def _take_alloc(self) -> None:
        w, idx, sent, size, others = self.pending.popleft()
        self.copying.append((_Copies(), None, None, size))   # holds the bytes until settled
        _, meta = self.conn.read_reply(w)
        _, alloc_dtype = _dtypes()
        e = _entries(meta, alloc_dtype, len(idx), "ALLOC")
        status = e["status"]
        ok = status == P.WireStatus.OK
        if not ok.all():
            failed = ~ok
            if (status == P.WireStatus.OUT_OF_MEMORY).any():
                again, accepted = reserve.refused_for_share_array(status, self.lengths[idx], others)
                if accepted is not None:
                    self.budget.learn(accepted)
                    self.retry.append(idx[again])
                    failed &= ~again
                    if self.deferred and idx[again][0] < self.deferred[0][1][0]:
                        self._publish_deferred(force=True)   # they hold the space the keys they wait for need
            self.results[idx[failed]] = _tables()[0][status[failed]]
            # the node holds nothing for the keys it did not reserve: their bytes go back to the budget now
            kept = int(self.lengths[idx[ok]].sum())
            self.budget.release(size - kept)
            self.copying[-1] = (self.copying[-1][0], None, None, kept)
            size = kept
            self._publish_deferred()   # keys that failed may be all a waiting run waited for
        if not self.mapping.held(sent):   # that space may be another key's by now: copy nothing
            self.results[idx[ok]] = E.TIMEOUT
            self._publish_deferred()
            return
        keys, offsets = idx[ok], e["offset"][ok].astype(np.int64)
        if (offsets < 0).any() or (offsets + self.lengths[keys] > self.mapping.length).any():
            raise _Failure(E.PROTOCOL_ERROR, "the node returned a range outside its arena")
        copies = _Copies()
        self.copying[-1] = (copies, e["id"][ok], keys, size)
        p = self.pieces
        if p.single:
            at = keys
            dst = offsets
        else:   # each key's pieces, in order: the value laid over them
            counts = p.first[keys + 1] - p.first[keys]
            step = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(_starts(counts), counts)
            at = np.repeat(p.first[keys], counts) + step
            dst = np.repeat(offsets, counts) + p.prefix[at]
        sizes = p.sizes[at]
        m = sizes > 0
        copies.add(p.where[at][m], self.base + dst[m], p.addrs[at][m], sizes[m], self.mapping)
        copies.run_host()

    def _commit(self) -> None:
        copies, ids, keys, size = self.copying.popleft()
        copies.synchronize()
        if ids is None or len(ids) == 0:
            self.budget.release(size)
            return
        # Without a chain every id goes in one COMMIT. A chain: each run of consecutive keys (the whole chunk unless some
        # were refused) is one COMMIT continuing the call's key before the run (the caller's parent for the call's first
        # key); a key that failed ends a run, as a refused entry does in a chained PUT, and a run after a key still to be
        # stored waits for it (self.deferred). The last COMMIT returns the bytes.
        cuts = (np.flatnonzero(np.diff(keys) != 1) + 1).tolist() if self.chain else []
        for a, b in zip([0, *cuts], [*cuts, len(keys)]):
            run = (ids[a:b], keys[a:b], size if b == len(keys) else 0)
            if self.chain and self.relinking is None and self._unsettled_before(int(keys[a])):
                at = bisect.bisect([int(d[1][0]) for d in self.deferred], int(keys[a]))
                self.deferred.insert(at, run)   # in key order
            else:
                self._send_commit(*run)
        self._publish_deferred()

    def _unsettled_before(self, key: int) -> bool:
        """Whether a key of the call before ``key`` is neither settled nor its COMMIT sent (reserved, refused for the
        share, or not asked for yet)."""
        return bool(((self.results[:key] == _PENDING) & ~self.sent[:key]).any())

    def _publish_deferred(self, force: bool = False) -> None:
        """Sends the COMMITs of the waiting runs whose earlier keys are all settled or sent (``force``: all of them)."""
        while self.deferred and (force or not self._unsettled_before(int(self.deferred[0][1][0]))):
            ids, keys, size = self.deferred.popleft()
            k = int(keys[0])
            if k > 0 and self.results[k - 1] == _PENDING and not self.sent[k - 1]:
                self.relink.append(k)   # its parent is not stored yet: the node makes it a root
            self._send_commit(ids, keys, size)

    def _send_commit(self, ids, keys, size: int) -> None:
        try:
            meta, flags = _id_list(ids), 0
            if self.chain:
                parent = self.key_bytes.key(int(keys[0]) - 1) if keys[0] > 0 else self.chain_parent
                flags = int(P.Flag.CHAIN)
                if parent is not None:
                    meta += struct.pack("<H", len(parent)) + parent
                    flags |= int(P.Flag.CHAIN_PARENT)
            w = self.conn.send_request(P.Opcode.COMMIT, meta, flags=flags, decode=False)
        except BaseException:
            self.budget.release(size)
            raise
        self.sent[keys] = True
        self.committing.append((w, keys, size))
        if not self.conn.pipelined:
            self._collect_commits(block=True)

    def _collect_commits(self, block: bool) -> None:
        while self.committing and (block or self.committing[0][0].done.is_set()):
            w, keys, size = self.committing.popleft()
            try:
                meta = self.conn.read_reply(w)[1]
            finally:
                self.budget.release(size)
            n = len(keys)
            if len(meta) != 4 + n or int.from_bytes(meta[:4], "little") != n:
                raise _Failure(E.PROTOCOL_ERROR, "COMMIT reply with a wrong count or length")
            self.results[keys] = _tables()[1][np.frombuffer(meta, dtype=np.uint8, count=n, offset=4)]
            block = False

    def abandon(self) -> None:
        """The put failed: copies into reserved space end before the node frees it; the budget gets its bytes back."""
        for copies, _, _, size in self.copying:
            copies.synchronize()
            self.budget.release(size)
        for _, _, _, size, _ in self.pending:
            self.budget.release(size)
        for _, _, size in self.committing:
            self.budget.release(size)
        for _, _, size in self.deferred:
            self.budget.release(size)
        self.pending.clear(), self.copying.clear(), self.committing.clear(), self.deferred.clear()


# Values reserved per ALLOC of a store from local memory: small enough that one chunk's DMA overlaps the next chunk's
# ALLOC (a GPU writes 2 GiB in ~40 ms; one 1 GiB chunk would leave nothing to overlap), large enough that the ALLOC
# round trips stay few. Measured on an H100, 2 GiB of 128 KiB blocks in one call, medians of alternating rounds:
# 64 MiB 36.4 GB/s, 128 MiB 37.5, 256 MiB 41.4, 512 MiB 39.5 into free space; overwrites in a full arena 128 MiB 31.5,
# 256 MiB 36.2 (a ramp from 8 MiB up: 31, a small chunk's DMA ends long before the next ALLOC's reply).
_STORE_CHUNK_BYTES = 256 << 20
# The first chunk is smaller, so that the first DMA starts after a short ALLOC while the next ALLOCs are already on the
# wire (with one ALLOC at a time, a ramp lost: 31 vs 37 GB/s). H100, 2 GiB of 128 KiB blocks in one call, 10 alternating
# rounds, medians GB/s: one ALLOC at a time 30.4, two ahead 32.0, two ahead with a 32 MiB first chunk 34.0 (64 MiB: 34.0).
_FIRST_CHUNK_BYTES = 32 << 20
# After the first chunk, chunks double up to _STORE_CHUNK_BYTES (32, 64, 128, 256 MiB), so each ALLOC's node time (about
# a microsecond per key) stays below the DMA time of the chunk before it; the last chunks halve (..., 240, 120, 60, 60),
# so the COMMITs of the large ones run during the small ones' DMA and the last COMMIT is short. With a fake copy engine of
# 53 GB/s on the 2-core machine (bench/local_put_ab.py --copies dma:53, 2 GiB of 128 KiB blocks, 25 rotating rounds):
# best 44.2 ms with both against 45.4 without (40.5 is the copy alone). On an H200 (bench/local_put_ab.py --device cuda,
# 10 rotating rounds): 0.90 of the pinned D2H copy with both against 0.86 without (0: off).
_RAMP_UP = 1
_RAMP_DOWN = 1


def _plan(key_lengths, value_lengths, max_keys: int, max_meta: int, cap: int, first: Optional[int] = None,
          ramp_up: bool = False, ramp_down: bool = False):
    """(start, end) ranges of positions, in order and covering them all, one per ALLOC: each within ``max_keys`` keys
    and ``max_meta`` bytes of metadata (a u32 count, then per key a u16 length, the key and a u64 value length) and
    holding at most ``cap`` bytes of values (``first`` for the first range), one key at least. ``ramp_up``: after the
    first, each range may hold twice the one before (up to ``cap``); ``ramp_down``: a range holds at most half of what
    is left from it on while that is over twice ``first``, so the last ranges shrink."""
    n = len(key_lengths)
    meta_at = np.concatenate(([0], np.cumsum(key_lengths + 10)))
    bytes_at = np.concatenate(([0], np.cumsum(value_lengths)))
    out, at, limit = [], 0, first or cap
    while at < n:
        if ramp_down and first:
            left = int(bytes_at[n] - bytes_at[at])
            limit = min(limit, left // 2 if left > 2 * first else left)
        end = min(n, at + max_keys,
                  int(np.searchsorted(meta_at, meta_at[at] + max_meta - 4, side="right")) - 1,
                  int(np.searchsorted(bytes_at, bytes_at[at] + limit, side="right")) - 1)
        end = max(end, at + 1)
        out.append((at, end))
        at, limit = end, min(cap, 2 * limit) if ramp_up else cap
    return out
