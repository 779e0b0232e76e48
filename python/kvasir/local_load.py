"""Loads from and stores into a node on this host, straight through its shared-memory arena.

``KvStore.batch_get_into_multi_buffers_submit_local`` leases the values (one round trip per chunk of
``max_batch_keys``), starts the copies and returns a :class:`LocalLoad` at once; the copies of one
chunk run while the next chunk is leased. A load of more keys than the connection keeps leased
(:mod:`kvasir.leases`: twice ``max_batch_keys``) waits for its earlier chunks' copies and releases them first. Stores (``KvStore.batch_put_from_local``) use the same copy
plan and live in :mod:`.local_put`.

Destinations and sources are host memory inside a registered buffer, or GPU memory when torch with
CUDA is present. Host copies are memcpys (a worker thread for loads). GPU copies are DMA between
the arena — registered with CUDA once per mapping (``cudaHostRegister``) — and GPU memory, on one
dedicated CUDA stream per device: no staging buffer. A chunk's GPU copies are submitted with one
``cudaMemcpyBatchAsync`` call (CUDA 12.8 and later; one ``cudaMemcpyAsync`` per copy before).

The copy plan is computed with numpy over whole chunks, with no Python object per value: the LEASE
and ALLOC replies decode as arrays, each value is laid over its pieces in order, and copies that
continue one another in both the arena and the destination merge into one. Every arena range the
node returns is checked against the mapping, and every GPU range against its allocation.

With the store's ``verify_crc`` a load checks each value against the CRC-32C in its LEASE reply once the
copies are done and before the leases are released (:meth:`LocalLoad._verify`).
"""

import ctypes
import itertools
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from . import errors as E
from . import leases
from . import protocol as P
from .connection import _Failure, _keys_bytes, _view
from .cuda import cuda
from .errors import KvasirError, ProtocolError

try:
    import numpy as np
except ImportError:   # the rest of the client needs no numpy; these calls do
    np = None


class KeyNotLocalError(KvasirError):
    """A key of an async local load is not in the local node's memory: use batch_get_into_multi_buffers."""


def _need_numpy() -> None:
    if np is None:
        raise KvasirError("local loads and stores need numpy (install the kvasir[numpy] extra)")


# --- planning: numpy over whole chunks ---------------------------------------------------------------

_LEASE = None   # numpy dtypes of the LEASE and ALLOC reply entries (docs/protocol.md § Shared memory)
_ALLOC = None


def _dtypes():
    global _LEASE, _ALLOC
    if _LEASE is None:
        _LEASE = np.dtype([("status", "u1"), ("offset", "<u8"), ("length", "<u8"), ("crc", "<u4"), ("id", "<u8")])
        _ALLOC = np.dtype([("status", "u1"), ("offset", "<u8"), ("id", "<u8")])
    return _LEASE, _ALLOC


def _entries(meta, dtype, count: int, what: str):
    if len(meta) < 4 or struct.unpack_from("<I", meta)[0] != count or len(meta) != 4 + count * dtype.itemsize:
        raise _Failure(E.PROTOCOL_ERROR, f"{what} reply with a wrong count or length")
    return np.frombuffer(meta, dtype=dtype, count=count, offset=4)


def _int_array(values, what: str):
    """int64 array of ``values`` (Python or numpy integers); ValueError for anything else."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu" and (
            values.dtype.itemsize < 8 or values.dtype.kind == "i" or not (values > np.iinfo(np.int64).max).any()):
        return values.astype(np.int64, copy=False)   # an engine's own array of addresses: no conversion per item
    flat = values if isinstance(values, list) else list(values)
    types = set(map(type, flat))
    if bool in types:
        raise ValueError(f"every {what} must be an int, not bool")
    if types == {int}:   # the usual list of Python ints: converted at C speed, each checked to fit
        try:
            return np.fromiter(flat, dtype=np.int64, count=len(flat))
        except OverflowError:
            raise ValueError(f"every {what} must be an int that fits 64 bits") from None
    arr = np.array(flat)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and (arr > np.iinfo(np.int64).max).any()):
        bad = next((v for v in flat if not isinstance(v, (int, np.integer))), None)
        raise ValueError(f"every {what} must be an int" + (f", not {type(bad).__name__}" if bad is not None else " that fits 64 bits"))
    return arr.astype(np.int64, copy=False)


def _coalesce(dst, src, size):
    """Merges copies that continue one another in both source and destination (order kept)."""
    if len(size) < 2:
        return dst, src, size
    cont = (dst[1:] == dst[:-1] + size[:-1]) & (src[1:] == src[:-1] + size[:-1])
    if not cont.any():
        return dst, src, size
    starts = np.flatnonzero(np.concatenate(([True], ~cont)))
    return dst[starts], src[starts], np.add.reduceat(size, starts)


def _locate(store, addrs, sizes):
    """Per piece: -1 for host memory inside a registered buffer, else the CUDA device whose
    allocation holds it. ValueError for anything else, before anything is sent."""
    where = np.full(len(addrs), -2, dtype=np.int64)
    if len(addrs) == 0:
        return where
    if (sizes < 0).any():
        raise ValueError("sizes must be non-negative")
    if (addrs <= 0).any():
        raise ValueError("addresses must be positive")
    where[sizes == 0] = -1   # nothing is ever copied to or from an empty piece
    regions = sorted(store._regions.items())
    if regions:
        bases = np.array([b for b, _ in regions], dtype=np.int64)
        reach = np.maximum.accumulate(bases + np.array([n for _, n in regions], dtype=np.int64))
        i = np.searchsorted(bases, addrs, side="right") - 1
        # some region starting at or before the address reaches past the piece's end: it holds it
        where[(i >= 0) & (addrs + sizes <= reach[np.maximum(i, 0)])] = -1
    todo = np.flatnonzero(where == -2)
    c = cuda() if len(todo) else None
    while len(todo):
        p, n = int(addrs[todo[0]]), int(sizes[todo[0]])
        found = c.allocation(p) if c is not None else None
        if found is None:
            raise ValueError(f"address range [{p:#x}, +{n}) is neither inside a registered buffer (call "
                             "register_buffer first) nor GPU memory")
        device, base, length = found
        members = todo[addrs[todo] == p] if length is None else todo[(addrs[todo] >= base) & (addrs[todo] < base + length)]
        if length is not None:
            over = members[addrs[members] + sizes[members] > base + length]
            if len(over):
                q = int(addrs[over[0]])
                raise ValueError(f"address range [{q:#x}, +{int(sizes[over[0]])}) runs past the end of its GPU allocation")
        where[members] = device
        todo = todo[where[todo] == -2]
    return where


class _Pieces:
    """Every key's destination pieces, flattened: addresses, sizes, owning key, offset in the key."""

    def __init__(self, store, addrs_per_key, sizes_per_key):
        k = len(addrs_per_key)
        if isinstance(addrs_per_key, np.ndarray) and addrs_per_key.ndim == 2:   # as many pieces for every key
            if not (isinstance(sizes_per_key, np.ndarray) and sizes_per_key.shape == addrs_per_key.shape):
                raise ValueError("a 2-D array of addresses needs a 2-D array of sizes of the same shape")
            counts = np.full(k, addrs_per_key.shape[1], dtype=np.int64)
            self.addrs = _int_array(addrs_per_key.ravel(), "address")
            self.sizes = _int_array(sizes_per_key.ravel(), "size")
        else:
            counts = np.fromiter(map(len, addrs_per_key), dtype=np.int64, count=k)
            if not np.array_equal(counts, np.fromiter(map(len, sizes_per_key), dtype=np.int64, count=k)):
                raise ValueError("each key needs as many sizes as addresses")
            self.addrs = _int_array(itertools.chain.from_iterable(addrs_per_key), "address")
            self.sizes = _int_array(itertools.chain.from_iterable(sizes_per_key), "size")
        self.where = _locate(store, self.addrs, self.sizes)
        self.key = np.repeat(np.arange(k, dtype=np.int64), counts)
        self.first = np.concatenate(([0], np.cumsum(counts)))          # key i's pieces: [first[i], first[i+1])
        at = np.concatenate(([0], np.cumsum(self.sizes)))
        self.prefix = at[:-1] - at[self.first[self.key]]                # bytes of the key before each piece
        self.capacity = at[self.first[1:]] - at[self.first[:-1]]
        self.single = False   # True: piece i is key i's only piece


def _single_pieces(store, ptrs, sizes) -> "_Pieces":
    """:class:`_Pieces` of one piece per key (``batch_put_from_local``), built from the flat lists in numpy: no
    per-key lists to flatten before the first reservation goes out."""
    pieces = _Pieces.__new__(_Pieces)
    pieces.addrs = _int_array(ptrs, "address")
    pieces.sizes = _int_array(sizes, "size")
    pieces.where = _locate(store, pieces.addrs, pieces.sizes)
    k = len(pieces.addrs)
    pieces.key = np.arange(k, dtype=np.int64)
    pieces.first = np.arange(k + 1, dtype=np.int64)
    pieces.prefix = np.zeros(k, dtype=np.int64)
    pieces.capacity = pieces.sizes
    pieces.single = True
    return pieces


class _Copies:
    """Copies grouped by where the non-arena side lives: host (-1) or a CUDA device."""

    def __init__(self):
        self.host = []      # (dst, src, size) tuples of numpy arrays
        self.events = []    # torch CUDA events after each submitted GPU batch

    def add(self, where, dst, src, size, mapping) -> None:
        c = None
        one = len(where) and (where == where[0]).all()   # the usual case: one source (host, or one GPU)
        for w in where[:1] if one else np.unique(where):
            m = slice(None) if one else where == w
            d, s, n = _coalesce(dst[m], src[m], size[m])
            if w == -1:
                self.host.append((d, s, n))
                continue
            if c is None:
                c = cuda()
                c.register(mapping)
            self.events.append(c.copy(int(w), d.astype(np.uint64), s.astype(np.uint64), n.astype(np.uint64)))

    def run_host(self) -> None:
        batch, self.host = self.host, []
        for d, s, n in batch:
            for a, b, k in zip(d.tolist(), s.tolist(), n.tolist()):
                ctypes.memmove(a, b, k)

    def synchronize(self) -> None:
        for e in self.events:
            e.synchronize()
        self.events = []


def _id_list(ids) -> bytes:
    """RELEASE and COMMIT metadata: u32 count, then the u64 ids."""
    return struct.pack("<I", len(ids)) + np.asarray(ids, dtype="<u8").tobytes()


# --- loads ---------------------------------------------------------------------------------------------

# Chunk jobs (planning, GPU submission, host memcpys) run here, so that the caller's thread goes on
# to lease the next chunk while the driver takes the copies of this one (ctypes calls drop the GIL).
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kvasir-local-load")


def _starts(lengths):
    """Where each of consecutive runs of ``lengths`` starts (an exclusive cumulative sum)."""
    out = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


class _KeyBytes:
    """Every key of one call encoded once, into one buffer: key ``i`` is ``raw[start[i]:start[i] + length[i]]`` (str
    keys are encoded in one call). The keys' part of a request's metadata, for any subset of them, is then built with
    numpy (:meth:`frame`): no Python object per key."""

    def __init__(self, keys):
        n = len(keys)
        raw = None
        if n and set(map(type, keys)) == {str}:
            raw = "\0".join(keys).encode("utf-8")
            seps = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0)
            if len(seps) == n - 1:   # no key holds a NUL itself
                self.start = np.concatenate(([0], seps + 1)).astype(np.int64)
                self.length = np.concatenate((seps, [len(raw)])).astype(np.int64) - self.start
            else:
                raw = None
        if raw is None:
            keys_b = _keys_bytes(keys)
            self.length = np.fromiter(map(len, keys_b), dtype=np.int64, count=n)
            self.start = _starts(self.length)
            raw = b"".join(keys_b)
        self.raw = np.frombuffer(raw, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.length)

    def key(self, i: int) -> bytes:
        """Key ``i``'s bytes."""
        start = int(self.start[i])
        return self.raw[start:start + int(self.length[i])].tobytes()

    def frame(self, idx, tail=None, suffix: bytes = b"") -> bytes:
        """Metadata for the keys ``idx`` (positions, in the order sent): u32 count, then per key a u16 length, its bytes
        and ``tail[j]`` (a uint8 array of one row per key: e.g. ALLOC's u64 value length); then ``suffix``."""
        n = len(idx)
        lengths = self.length[idx]
        cuts = (np.flatnonzero(lengths[1:] != lengths[:-1]) + 1).tolist()
        if len(cuts) > 8 + n // 64:
            return self._frame_bytes(idx, lengths, tail, suffix)
        # keys of one length in a row (the usual case: "blk/1000" to "blk/9999") are one array of packed records
        parts = [struct.pack("<I", n)]
        starts = self.start[idx]
        width = 0 if tail is None else tail.shape[1]
        for a, b in zip([0, *cuts], [*cuts, n]) if n else ():
            size = int(lengths[a])
            records = np.empty(b - a, dtype=[("length", "<u2"), ("key", np.uint8, (size,))] +
                               ([("tail", np.uint8, (width,))] if width else []))
            records["length"] = size
            records["key"] = self.raw[starts[a:b, None] + np.arange(size)]
            if width:
                records["tail"] = tail[a:b]
            parts.append(records.tobytes())
        parts.append(suffix)
        return b"".join(parts)

    def _frame_bytes(self, idx, lengths, tail, suffix: bytes) -> bytes:
        """:meth:`frame` byte by byte, for keys of many different lengths."""
        n = len(idx)
        width = 0 if tail is None else tail.shape[1]
        at = 4 + _starts(2 + lengths + width)             # each entry's first byte
        end = 4 + int(lengths.sum()) + (2 + width) * n
        out = np.empty(end + len(suffix), dtype=np.uint8)
        out[:4] = np.frombuffer(struct.pack("<I", n), dtype=np.uint8)
        out[at] = lengths & 0xFF
        out[at + 1] = lengths >> 8
        total = end - 4 - (2 + width) * n
        if total:
            step = np.arange(total, dtype=np.int64) - np.repeat(_starts(lengths), lengths)   # byte's place in its key
            out[np.repeat(at + 2, lengths) + step] = self.raw[np.repeat(self.start[idx], lengths) + step]
        if width:
            out[(at + 2 + lengths)[:, None] + np.arange(width)] = tail
        out[end:] = np.frombuffer(suffix, dtype=np.uint8)
        return out.tobytes()


def _chunks(lengths, hello):
    """(start, end) ranges of keys within the node's batch-key and metadata limits."""
    cost = np.concatenate(([0], np.cumsum(lengths + 2)))
    chunks, start, n = [], 0, len(lengths)
    while start < n:
        end = min(n, start + hello.max_batch_keys)
        end = min(end, int(np.searchsorted(cost, cost[start] + hello.max_meta_bytes - 4, side="right")) - 1)
        end = max(end, start + 1)
        chunks.append((start, end))
        start = end
    return chunks


def submit_load(store, keys, addrs_per_key, sizes_per_key) -> "LocalLoad":
    """KvStore.batch_get_into_multi_buffers_submit_local (see there)."""
    _need_numpy()
    if not (len(keys) == len(addrs_per_key) == len(sizes_per_key)):
        raise ValueError(f"{len(keys)} keys but {len(addrs_per_key)} address lists and {len(sizes_per_key)} size lists")
    key_bytes = _KeyBytes(keys)
    key_lengths = key_bytes.length
    lease_dtype, _ = _dtypes()
    # The store's lock only while buffers and the connection are looked up: the LEASEs go out on the shared
    # connection (pipelined with other threads' requests), and the leases stay tied to it until released.
    with store._lock:
        pieces = _Pieces(store, addrs_per_key, sizes_per_key)
    conn, mapping = _local_connection(store, KeyNotLocalError)
    hello = store.hello
    bad = np.flatnonzero((key_lengths < 1) | (key_lengths > hello.max_key_bytes))
    if len(bad):
        raise KeyNotLocalError(f"key {keys[int(bad[0])]!r} is not a valid key")
    slots = leases.slots_of(conn)
    load = LocalLoad(store, conn, mapping, len(key_bytes), slots)
    if store.verify_crc:
        load.verify(store._value_check, key_bytes, pieces)
    try:
        for start, end in _chunks(key_lengths, hello):
            # Within the connection's leases in flight (kvasir.leases): past them, the oldest loads' chunks started so far
            # (this one's too) have their copies finished and their leases released first.
            slots.take(end - start, load, broken=lambda: conn.broken)
            sent = time.monotonic()
            try:
                meta = conn.call_raw(P.Opcode.LEASE, key_bytes.frame(np.arange(start, end)))
                e = _entries(meta, lease_dtype, end - start, "LEASE")
            except BaseException:
                slots.give(end - start, load)
                raise
            ok = e["status"] == P.WireStatus.OK
            load.leased.append((sent, e["id"][ok].copy(), end - start))
            if not ok.all():
                j = int(np.flatnonzero(~ok)[0])
                status = int(e["status"][j])
                if status == P.WireStatus.OUT_OF_MEMORY:   # every lease slot of the node is held (--max-leases)
                    raise KeyNotLocalError(f"key {keys[start + j]!r} could not be leased: the node holds as many leases as "
                                           "it may (OUT_OF_MEMORY); read it with batch_get_into_multi_buffers")
                raise KeyNotLocalError(f"key {keys[start + j]!r} is not in the local node ({P.wire_status(status)!s})")
            offsets, lengths = e["offset"].astype(np.int64), e["length"].astype(np.int64)
            if (offsets + lengths > mapping.length).any() or (offsets < 0).any():
                raise _Failure(E.PROTOCOL_ERROR, "the node returned a range outside its arena")
            too_big = np.flatnonzero(lengths > pieces.capacity[start:end])
            if len(too_big):
                j = int(too_big[0])
                raise KeyNotLocalError(f"key {keys[start + j]!r}: value of {int(lengths[j])} bytes does not fit its buffers")
            load.lengths[start:end] = lengths
            load.start(pieces, start, end, offsets, lengths, mapping, e["crc"].copy())
    except BaseException as ex:
        load.abort()
        if isinstance(ex, (_Failure, ProtocolError)):
            store._drop(conn)
            raise KvasirError(str(ex)) from None
        raise
    return load


def _copy_chunk(pieces, start: int, end: int, offsets, lengths, mapping, base: int):
    """Lays keys [start, end) over their pieces and runs (host) or submits (GPU) the copies; returns
    the CUDA events to wait for. ``base``: the address of the arena's first byte, from the load's pin."""
    lo, hi = pieces.first[start], pieces.first[end]
    key = pieces.key[lo:hi] - start
    prefix = pieces.prefix[lo:hi]
    take = np.clip(lengths[key] - prefix, 0, pieces.sizes[lo:hi])
    m = take > 0
    copies = _Copies()
    try:
        copies.add(pieces.where[lo:hi][m], pieces.addrs[lo:hi][m], base + offsets[key][m] + prefix[m], take[m], mapping)
        copies.run_host()
    except BaseException:
        copies.synchronize()   # what was submitted reads leased space: it ends before the leases go
        raise
    return copies.events


def _local_connection(store, error):
    """The store's connection and arena mapping, or ``error`` when the node is not reachable through
    shared memory."""
    if store._router is not None:
        raise error("local loads and stores use one local node; this store routes over a cluster")
    try:
        conn = store._connection()
        mapping = store._negotiate(conn)
    except _Failure as ex:
        raise KvasirError(str(ex)) from None
    if mapping is None:
        raise error("the node is not reachable through shared memory (see the transport log)")
    return conn, mapping


class LocalLoad:
    """A load in flight. ``is_done()`` polls; ``wait()`` blocks and returns the lengths per key (with the store's
    ``verify_crc``: ``CHECKSUM_MISMATCH`` for a value that failed the check). The leases are released once the copies
    have finished (seen by ``is_done`` or ``wait``), or earlier by :meth:`settle` when a request on the connection
    needs the room (its leases in flight are bounded: :mod:`kvasir.leases`)."""

    def __init__(self, store, conn, mapping, count: int, slots=None):
        self._store, self._conn, self._mapping, self._slots = store, conn, mapping, slots
        self.lengths = np.zeros(count, dtype=np.int64)
        self.leased = []       # per leased chunk: (monotonic time LEASE was sent, lease ids, lease slots it took)
        self._expired = False
        self._jobs = []        # futures of _copy_chunk, one per started chunk
        self._released = 0     # leading entries of ``leased`` released
        self._lock = threading.Lock()
        self._check = None     # verify_crc: (ValueCheck, the keys, the pieces); each chunk's plan in _chunks
        self._chunks = []      # per started chunk: (start, end, arena offsets, lengths, the node's CRCs)
        self._verified = 0     # leading entries of ``_chunks`` checked
        # held from a range's check to its RELEASE: a GPU piece is checked in the arena, which must still be its lease's
        self._settling = threading.Lock()
        # the arena stays mapped while this load's copies may run, even if the store is closed meanwhile (shm.ShmMapping.pin)
        self._pin = mapping.pin()
        self._base = ctypes.addressof(self._pin)

    def verify(self, check, key_bytes, pieces) -> None:
        """Checks every value against the CRC-32C in its LEASE reply once the copies are done (``verify_crc``)."""
        self._check = (check, key_bytes, pieces)

    def start(self, pieces, start, end, offsets, lengths, mapping, crcs=None) -> None:
        if self._check is not None:
            self._chunks.append((start, end, offsets, lengths, crcs))
        self._jobs.append(_pool.submit(_copy_chunk, pieces, start, end, offsets, lengths, mapping, self._base))

    def is_done(self) -> bool:
        done = all(j.done() for j in self._jobs) and all(
            e.query() for j in self._jobs if j.exception() is None for e in j.result())
        if done:
            self._finish()
        return done

    def wait(self, timeout: Optional[float] = None) -> List[int]:
        for j in self._jobs:
            if j.exception(timeout) is None:
                for e in j.result():
                    e.synchronize()
        self._finish()
        return self.lengths.tolist()

    def abort(self) -> None:
        """The submit failed: let what was started finish (it reads leased space), then release."""
        self._wait_copies(self._jobs)
        with self._settling:
            self._release()
        self._pin = None   # no copy runs any more

    def settle(self) -> bool:
        """Waits for the copies of every chunk started so far, checks them (``verify_crc``) and releases their leases,
        giving their slots back, so that the connection's leases in flight stay within :mod:`kvasir.leases` (any thread
        may call it: the copies were submitted already). Never raises: a failed copy is raised by ``wait()``. False
        when every chunk started was settled already."""
        upto = len(self._jobs)
        if self._released >= upto:
            return False
        self._wait_copies(self._jobs[self._released:upto])
        with self._settling:
            if all(j.exception() is None for j in self._jobs[:upto]):
                self._verify(upto)   # before the leases go, as in _finish
            self._release(upto)
        return True

    @staticmethod
    def _wait_copies(jobs) -> None:
        for j in jobs:
            if j.exception() is None:
                for e in j.result():
                    e.synchronize()

    def _finish(self) -> None:
        failed = next((j.exception() for j in self._jobs if j.exception() is not None), None)
        with self._settling:
            if failed is None:
                self._verify()   # before the leases go: GPU pieces are checked in the arena, which is then still theirs
            self._release()
            self._pin = None   # every copy has ended (wait and is_done call this only then)
        if failed is not None:
            raise KvasirError(f"local copy failed: {failed}")
        if self._expired:
            raise KvasirError("a lease ended before the copies finished (its connection closed, or the node's lease "
                              "timeout passed): the destinations may hold wrong bytes; load them again")

    def _verify(self, upto: Optional[int] = None) -> None:
        """With ``verify_crc``: each value's CRC-32C against its node's; a mismatch is CHECKSUM_MISMATCH for the key
        (counted and logged by the store's ValueCheck). A piece in host memory is checked as the caller got it; a
        piece in GPU memory (not readable here without a copy back) by the arena bytes its DMA read. ``upto``: the
        chunks started before it (default all); each chunk is checked once."""
        with self._lock:
            if self._check is None:
                return
            first, upto = self._verified, len(self._chunks) if upto is None else upto
            self._verified = max(first, upto)
        check, key_bytes, pieces = self._check
        for start, end, offsets, lengths, crcs in self._chunks[first:upto]:
            for k in range(start, end):
                length, at = int(lengths[k - start]), int(offsets[k - start])
                crc, left = 0, length
                for p in range(int(pieces.first[k]), int(pieces.first[k + 1])):
                    if left == 0:
                        break
                    take = min(left, int(pieces.sizes[p]))
                    if take == 0:
                        continue   # an empty piece between others
                    if pieces.where[p] == -1:
                        crc = P.crc32c(_view(int(pieces.addrs[p]), take), crc)
                    else:
                        src = at + int(pieces.prefix[p])
                        crc = P.crc32c(_view(self._base + src, take), crc)
                    left -= take
                if not check.matches(crc, int(crcs[k - start]), key_bytes.key(k), length, self._conn.where, "shm"):
                    self.lengths[k] = E.CHECKSUM_MISMATCH

    def _release(self, upto: Optional[int] = None) -> None:
        """Releases the leases of the chunks leased before ``upto`` (default all), each once, and gives their slots back."""
        with self._lock:
            first, upto = self._released, len(self.leased) if upto is None else upto
            self._released = max(first, upto)
        for sent, ids, taken in self.leased[first:upto]:   # one RELEASE per leased chunk: each fits the batch limit
            try:
                if len(ids) and not self._store._release_leases(self._conn, _id_list(ids), confirm=not self._mapping.held(sent)):
                    self._expired = True
            finally:
                if self._slots is not None:
                    self._slots.give(taken, self)
