"""Stores into a node on this host straight through its shared-memory arena: ``KvStore.batch_put_from_local`` and
``batch_put_from_multi_buffers_local`` reserve arena space (ALLOC), copy the values in from host or GPU memory and
publish them (COMMIT), as a pipeline on the connection (see :class:`_LocalPut`). The copy plan is the one loads use
(:mod:`.local_load`)."""

import time
from collections import deque
from typing import List, Optional

from . import errors as E
from . import protocol as P
from . import reserve
from . import shm
from ._batch import split_keys
from .connection import _code, _Failure, _keys_bytes
from .errors import ProtocolError
from .local_load import (KeyNotLocalError, _Copies, _dtypes, _entries, _id_list, _local_connection, _need_numpy, _Pieces,
                         _single_pieces)

try:
    import numpy as np
except ImportError:   # the rest of the client needs no numpy; these calls do
    np = None


# --- stores ----------------------------------------------------------------------------------------------

def put_local(store, keys, addrs_per_key, sizes_per_key) -> List[int]:
    """KvStore.batch_put_from_multi_buffers_local (see there): each value gathered from its pieces."""
    _need_numpy()
    if not (len(keys) == len(addrs_per_key) == len(sizes_per_key)):
        raise ValueError(f"{len(keys)} keys but {len(addrs_per_key)} address lists and {len(sizes_per_key)} size lists")
    return _put(store, keys, lambda: _Pieces(store, addrs_per_key, sizes_per_key))


def put_local_single(store, keys, ptrs, sizes) -> List[int]:
    """KvStore.batch_put_from_local (see there): one piece per value."""
    _need_numpy()
    if not (len(keys) == len(ptrs) == len(sizes)):
        raise ValueError(f"{len(keys)} keys but {len(ptrs)} addresses and {len(sizes)} sizes")
    return _put(store, keys, lambda: _single_pieces(store, ptrs, sizes))


def _put(store, keys, make_pieces) -> List[int]:
    keys_b = _keys_bytes(keys)
    results: List[Optional[int]] = [E.INVALID_KEY] * len(keys_b)
    # ALLOC and COMMIT of one reservation go on one connection, in that order; the store's lock is held only while
    # buffers and the connection are looked up.
    with store._lock:
        pieces = make_pieces()
    conn, mapping = _local_connection(store, KeyNotLocalError)
    hello = store.hello
    todo = [i for i, k in enumerate(keys_b) if 1 <= len(k) <= hello.max_key_bytes]
    for i in todo:
        results[i] = None   # not settled yet
    put = _LocalPut(conn, mapping, keys_b, pieces, results)
    try:
        # ALLOC: key, u64 length each; then the TTL and proof suffix
        limits = _Limits(hello.max_batch_keys, hello.max_meta_bytes - 4 - P.ARENA_PROOF_BYTES)
        put.run(split_keys(todo, keys_b, limits, per_key=2 + 8), todo)
    except (_Failure, ProtocolError) as ex:
        put.abandon()
        store._drop(conn)              # the node aborts the connection's reservations
        store.last_error = str(ex)
        code = ex.code if isinstance(ex, _Failure) else E.PROTOCOL_ERROR
        results = [code if r is None else r for r in results]
    except BaseException:
        put.abandon()
        store._drop(conn)
        raise
    return results


class _LocalPut:
    """One ``put_local``: chunks of keys reserved (ALLOC), copied in from local memory (DMA for GPU sources) and
    published (COMMIT), as a pipeline on the connection. Up to two ALLOCs are on the wire ahead of the chunk whose
    copies run, so the GPU never waits for a round trip; a chunk's COMMIT is sent once its copies ended, and its
    reply read when it comes (the budget's bytes are returned then). Everything reserved stays within the
    connection's reservation budget (:mod:`.reserve`); keys refused for the share are asked for again once this
    put holds nothing else."""

    def __init__(self, conn, mapping, keys_b, pieces, results):
        self.conn, self.mapping, self.keys_b, self.pieces, self.results = conn, mapping, keys_b, pieces, results
        self.lengths = pieces.capacity
        self.budget = reserve.budget_of(conn, mapping)
        self.base = mapping.address()
        self.ahead = 2 if conn.pipelined else 1   # over TLS one request at a time: no ALLOC ahead, COMMITs read at once
        self.pending = deque()    # ALLOCs sent: (waiter, keys, monotonic time sent, bytes, bytes others held)
        self.copying = deque()    # chunks whose copies run: (copies, reservation ids, their keys, bytes)
        self.committing = deque()   # COMMITs sent: (waiter, keys, bytes)
        self.retry = []           # keys refused for the connection's share

    def run(self, node_chunks, todo) -> None:
        cap = max(1, min(_STORE_CHUNK_BYTES, self.budget.limit // (self.ahead + 1)))
        chunks = _by_bytes(node_chunks, todo, self.lengths, cap)
        if _FIRST_CHUNK_BYTES and chunks:
            a, b = chunks[0]
            first = _by_bytes([(a, b)], todo, self.lengths, _FIRST_CHUNK_BYTES)
            chunks = first[:1] + _by_bytes([(first[0][1], b)], todo, self.lengths, cap) + chunks[1:] if first[0][1] < b else chunks
        queue = deque(np.array(todo[a:b], dtype=np.int64) for a, b in chunks)
        while True:
            self._collect_commits(block=False)
            while queue and len(self.pending) < self.ahead and self._send_alloc(queue[0]):
                queue.popleft()
            if self.pending:
                self._take_alloc()
                while len(self.copying) > 1:   # the newest chunk's copies run on; the older ones are done or nearly
                    self._commit()
            elif self.copying:
                self._commit()
            elif self.committing:
                self._collect_commits(block=True)
            elif queue:
                continue   # nothing of this put is held now: the next ALLOC waits for other threads' bytes
            elif self.retry:
                idx, self.retry = np.array(self.retry, dtype=np.int64), []
                cap = max(1, self.budget.limit)
                queue.extend(idx[a:b] for a, b in _by_bytes([(0, len(idx))], list(range(len(idx))), self.lengths[idx], cap))
            else:
                return

    def _send_alloc(self, idx) -> bool:
        size = int(self.lengths[idx].sum())
        mine = bool(self.pending or self.copying or self.committing)
        others = self.budget.acquire(size, wait=not mine, broken=lambda: self.conn.broken)
        if others is None:
            return False
        try:
            sent = time.monotonic()
            flags, meta = shm.alloc_request(self.conn, [self.keys_b[i] for i in idx], self.lengths[idx].tolist())
            w = self.conn.send_request(P.Opcode.ALLOC, meta, flags=flags, decode=False)
        except BaseException:
            self.budget.release(size)
            raise
        # bytes this put holds count as others' for the share (they are this connection's too)
        self.pending.append((w, idx, sent, size, others))
        return True

    def _take_alloc(self) -> None:
        w, idx, sent, size, others = self.pending.popleft()
        self.copying.append((_Copies(), np.empty(0, dtype=np.uint64), idx[:0], size))   # holds the bytes until settled
        _, meta = self.conn.read_reply(w)
        _, alloc_dtype = _dtypes()
        e = _entries(meta, alloc_dtype, len(idx), "ALLOC")
        lengths = self.lengths[idx]
        again = np.zeros(len(idx), dtype=bool)
        retry, accepted = [], None
        if (e["status"] == P.WireStatus.OUT_OF_MEMORY).any():
            retry, accepted = reserve.refused_for_share(e["status"].tolist(), lengths.tolist(), others)
        if retry:
            self.budget.learn(accepted)
            again[retry] = True
            self.retry.extend(idx[again].tolist())
        ok = e["status"] == P.WireStatus.OK
        for i, st in zip(idx[~ok & ~again].tolist(), e["status"][~ok & ~again].tolist()):
            self.results[i] = _code(st)
        if not self.mapping.held(sent):   # that space may be another key's by now: copy nothing
            for i in idx[ok].tolist():
                self.results[i] = E.TIMEOUT
            return
        offsets = e["offset"].astype(np.int64)
        if ((offsets + lengths > self.mapping.length) & ok).any():
            raise _Failure(E.PROTOCOL_ERROR, "the node returned a range outside its arena")
        copies = _Copies()
        self.copying[-1] = (copies, e["id"][ok], idx[ok], size)
        key_offset = np.full(len(self.keys_b), -1, dtype=np.int64)   # arena offset of each reserved key
        key_offset[idx[ok]] = offsets[ok]
        p = self.pieces
        to = key_offset[p.key]
        m = (to >= 0) & (p.sizes > 0)
        copies.add(p.where[m], self.base + to[m] + p.prefix[m], p.addrs[m], p.sizes[m], self.mapping)
        copies.run_host()

    def _commit(self) -> None:
        copies, ids, owners, size = self.copying.popleft()
        copies.synchronize()
        if len(ids) == 0:
            self.budget.release(size)
            return
        try:
            w = self.conn.send_request(P.Opcode.COMMIT, _id_list(ids))
        except BaseException:
            self.budget.release(size)
            raise
        self.committing.append((w, owners, size))
        if not self.conn.pipelined:
            self._collect_commits(block=True)

    def _collect_commits(self, block: bool) -> None:
        while self.committing and (block or self.committing[0][0].done.is_set()):
            w, owners, size = self.committing.popleft()
            try:
                statuses = self.conn.read_reply(w)[1].statuses
            finally:
                self.budget.release(size)
            if len(statuses) != len(owners):
                raise _Failure(E.PROTOCOL_ERROR, "COMMIT reply with a wrong count")
            for i, st in zip(owners.tolist(), statuses):
                self.results[i] = E.OK if st == P.WireStatus.OK else E.TIMEOUT if st == P.WireStatus.NOT_FOUND else _code(st)
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
        self.pending.clear(), self.copying.clear(), self.committing.clear()


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


class _Limits:
    """The node's request limits as :func:`split_keys` reads them, less room kept for a suffix."""

    def __init__(self, max_batch_keys: int, max_meta_bytes: int):
        self.max_batch_keys, self.max_meta_bytes = max_batch_keys, max_meta_bytes


def _by_bytes(chunks, todo, lengths, cap: Optional[int] = None):
    """``chunks`` (positions in ``todo``) split further so that each holds at most ``cap`` bytes of values (one key at least)."""
    cap = _STORE_CHUNK_BYTES if cap is None else cap
    if not todo:
        return []
    at_bytes = np.concatenate(([0], np.cumsum(lengths[np.asarray(todo, dtype=np.int64)])))
    out = []
    for start, end in chunks:
        at = start
        while at < end:
            stop = int(np.searchsorted(at_bytes, at_bytes[at] + cap, side="right")) - 1
            stop = min(max(stop, at + 1), end)
            out.append((at, stop))
            at = stop
    return out
