"""Same-host shared-memory transport (docs/protocol.md § Shared memory).

Control messages go over the store's TCP connection; payload bytes are one memcpy between the
caller's memory and the node's arena, which this module maps from its /dev/shm file. The mapping is
used only after the node's SHM_INFO token matches the token file next to the arena, which proves
that this process opened that very node's arena, on the same host, with permission.
"""

import ctypes
import logging
import mmap
import os
import socket
import struct
import time
from typing import Optional

from . import errors as E
from . import protocol as P
from . import leases, reserve, tcp
from .connection import _code, _Failure
from .errors import KvasirError
from .value_check import crc_of

log = logging.getLogger("kvasir")


def is_local_address(host: str) -> bool:
    """True for loopback and for addresses of this host's interfaces (best effort)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    if any(a.startswith("127.") or a == "::1" for a in addresses):
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        own = set()
    return bool(addresses & own)


class ShmMapping:
    """The node's arena mapped into this process."""

    def __init__(self, info: "P.ShmInfoReply"):
        self.path = info.path
        try:
            with open(info.path + ".token", "rb") as f:
                token = f.read()
        except OSError as ex:
            raise KvasirError(f"cannot read {info.path}.token: {ex.strerror or ex}") from None
        if token != bytes(info.token):
            raise KvasirError(f"{info.path} on this host is not the node's arena (token differs: the node is on another host)")
        try:
            fd = os.open(info.path, os.O_RDWR)
        except OSError as ex:
            raise KvasirError(f"cannot open {info.path}: {ex.strerror or ex}") from None
        try:
            if info.lease_timeout_ms <= 0:
                raise KvasirError("the node reported a lease timeout of 0 ms")
            size = os.fstat(fd).st_size
            if size < info.arena_length:
                raise KvasirError(f"{info.path} is shorter than the arena")
            # the node's secret past the mapped bytes (docs/protocol.md § Writes without the node's passes); older nodes have none
            secret = os.pread(fd, P.ARENA_SECRET_BYTES, info.arena_length) if size >= info.arena_length + P.ARENA_SECRET_BYTES else b""
            self.secret = secret if len(secret) == P.ARENA_SECRET_BYTES else None
            self.mm = mmap.mmap(fd, info.arena_length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.view = memoryview(self.mm)
        self.token = bytes(info.token)
        self.length = info.arena_length
        self.lease_timeout = info.lease_timeout_ms / 1000.0
        self.cuda_registered = False
        self._anchor = None
        self.close_hooks = []   # run before unmapping (CUDA unregisters the pinned range)
        self.closed = False     # close() ran: a copy that finds the view released fails UNAVAILABLE

    def serves(self, info) -> bool:
        """Whether a node's SHM_INFO names this very arena: false for a node restarted at the same address."""
        return isinstance(info, P.ShmInfoReply) and info.path == self.path and info.arena_length == self.length \
            and bytes(info.token) == self.token

    def grant(self, conn, info) -> None:
        """Gives ``conn`` its arena proof from this connection's SHM_INFO ``info`` (None when the node sent no challenge)."""
        conn.arena_proof = P.arena_proof(self.secret, info.challenge) \
            if self.secret is not None and getattr(info, "challenge", None) is not None and conn.arena_features else None

    def held(self, sent: float) -> bool:
        """True while a lease or reservation requested at monotonic time ``sent`` cannot have expired."""
        return time.monotonic() - sent < self.lease_timeout * TRUST_FRACTION

    def address(self) -> int:
        """Address of the mapping's first byte (for memmove and DMA)."""
        if self._anchor is None:
            self._anchor = ctypes.c_char.from_buffer(self.mm)   # keeps the mapping exported while used
        return ctypes.addressof(self._anchor)

    def pin(self):
        """An export of the mapping for copies by address (memmove, DMA) that run outside its memoryview: while one
        lives, :meth:`close` leaves the arena mapped (it is unmapped when the last one and the mapping are gone), so a
        store closed under an async load's copies never unmaps the memory they read. ``ctypes.addressof`` of it is the
        mapping's first byte. KvasirError once the mapping is closed."""
        try:
            return ctypes.c_char.from_buffer(self.mm)
        except (ValueError, BufferError) as ex:
            raise KvasirError(f"the node's arena mapping is closed ({ex})") from None

    def copy_out(self, offset: int, length: int, pieces) -> None:
        """The value at ``offset`` into the destination pieces, filled in order (one memcpy each)."""
        if offset + length > self.length:
            raise _Failure(E.PROTOCOL_ERROR, "the node returned a range outside its arena")
        left, at = length, offset
        try:
            for p in pieces:
                if left == 0:
                    break
                n = min(left, len(p))
                p[:n] = self.view[at:at + n]
                at += n
                left -= n
        except ValueError:   # the view was released under the copy (close(): the store let go of a dead node's arena)
            if self.closed:
                raise _Failure(E.UNAVAILABLE, "the node's arena was unmapped: its node is gone") from None
            raise

    def copy_in(self, offset: int, pieces) -> None:
        at = offset
        try:
            for p in pieces:
                n = len(p)
                if at + n > self.length:
                    raise _Failure(E.PROTOCOL_ERROR, "the node returned a range outside its arena")
                self.view[at:at + n] = p
                at += n
        except ValueError:   # as in copy_out
            if self.closed:
                raise _Failure(E.UNAVAILABLE, "the node's arena was unmapped: its node is gone") from None
            raise

    def close(self) -> None:
        self.closed = True
        hooks, self.close_hooks = self.close_hooks, []
        for hook in hooks:
            hook()
        self._anchor = None
        try:
            self.view.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass  # a buffer still exported (a load's or put's pin, copies in flight): the mapping goes with the object


NOT_LOCAL = " is not an address of this host"


def negotiate(conn, host: str, mode: str, logged: Optional[str] = None):
    """Returns ``(mapping, reason)`` for ``mode`` "auto"/"shm": the arena mapped, or None and why (auto: TCP).
    ``shm`` raises :class:`KvasirError` where auto falls back. The reason is logged unless it equals
    ``logged`` (the store's last one: once per store, not once per reconnect); a node on this host whose
    arena cannot be used is a warning (it costs several times the throughput), a remote node is not."""
    def refuse(reason: str):
        if mode == "shm":
            raise KvasirError(f"shm transport unavailable: {reason}")
        if reason != logged:
            if reason.endswith(NOT_LOCAL):
                log.info("kvasir: using TCP to %s: %s", host, reason)
            else:
                log.warning("kvasir: using TCP to %s, a node on this host: %s", host, reason)
        return None, reason

    if not is_local_address(host):
        return refuse(host + NOT_LOCAL)
    try:
        info = conn.call(P.Opcode.SHM_INFO, b"")
    except KvasirError as ex:
        return refuse(str(ex))
    if not isinstance(info, P.ShmInfoReply) or not info.path:
        return refuse("the node has no shared-memory arena (started with --shm off)")
    try:
        mapping = ShmMapping(info)
    except KvasirError as ex:
        return refuse(str(ex))
    mapping.grant(conn, info)
    return mapping, None


# The node holds a lease or reservation for its lease timeout at least (SHM_INFO reports it;
# docs/protocol.md § Ownership and timeouts). A copy that ends within this share of it after its
# LEASE/ALLOC was sent needs no confirmation; a later one is trusted only when RELEASE/COMMIT answers
# OK. The rest is a margin for clock readings and the time after the last one.
TRUST_FRACTION = 0.9


def lease_chunk(conn, mapping, keys, dests, results, allocated, idx, check=None):
    """LEASE the keys ``idx``, copy each hit out of the arena, RELEASE. Codes go to ``results``;
    with ``check`` (a :class:`kvasir.value_check.ValueCheck`) enabled, a copy whose CRC-32C differs from
    the one in the LEASE reply is CHECKSUM_MISMATCH (the caller's bytes are what is checked). A copy that
    took so long that its lease may have expired counts only if RELEASE confirms the lease (else
    TIMEOUT). Keys the node answers OUT_OF_MEMORY (every lease slot of the node held, ``--max-leases``, or no
    arena space to stage a cold value in) are read over TCP on the same connection. The connection's leases in flight
    stay within :mod:`.leases`."""
    slots = leases.slots_of(conn)
    slots.take(len(idx), broken=lambda: conn.broken)
    try:
        over_tcp = _lease_copy_release(conn, mapping, keys, dests, results, allocated, idx, check)
    finally:
        slots.give(len(idx))
    if over_tcp:
        tcp.get_chunk(conn, keys, dests, results, allocated, over_tcp, check)


def _lease_copy_release(conn, mapping, keys, dests, results, allocated, idx, check):
    """:func:`lease_chunk`'s LEASE → copies → RELEASE; returns the keys the node could not lease (to read over TCP)."""
    verify = check is not None and check.enabled
    sent = time.monotonic()
    reply = conn.call(P.Opcode.LEASE, P.encode_key_batch([keys[i] for i in idx]))
    if len(reply.entries) != len(idx):
        raise _Failure(E.PROTOCOL_ERROR, "LEASE reply with a wrong count")
    ids, owners, over_tcp = [], [], []
    try:
        for i, e in zip(idx, reply.entries):
            if e.status != P.WireStatus.OK:
                results[i] = _code(e.status)
                if e.status == P.WireStatus.OUT_OF_MEMORY:
                    over_tcp.append(i)
                continue
            ids.append(e.lease_id)
            owners.append(i)
            pieces = dests[i]
            if pieces is None:
                buf = bytearray(e.length)
                pieces = [memoryview(buf)]
                allocated[i] = buf
            if sum(len(p) for p in pieces) < e.length:
                results[i] = E.BUFFER_TOO_SMALL
                continue
            mapping.copy_out(e.offset, e.length, pieces)
            if verify and not check.matches(crc_of(pieces, e.length), e.crc32c, keys[i], e.length, conn.where, "shm"):
                results[i] = E.CHECKSUM_MISMATCH
                allocated[i] = None
                continue
            results[i] = e.length
    except BaseException:
        if ids:
            conn.send_deferred(P.Opcode.RELEASE, P.encode_meta(P.IdList(ids)))
        raise
    if not ids:
        return over_tcp
    if mapping.held(sent):   # its reply is read before the next request: no round trip spent on it
        conn.send_deferred(P.Opcode.RELEASE, P.encode_meta(P.IdList(ids)))
        return over_tcp
    statuses = conn.call(P.Opcode.RELEASE, P.encode_meta(P.IdList(ids))).statuses
    for i, st in zip(owners, statuses):
        if st != P.WireStatus.OK and results[i] >= 0:   # the lease ended before the copy did
            results[i] = E.TIMEOUT
            allocated[i] = None
    return over_tcp


def alloc_suffix(conn, ttl_seconds=None):
    """ALLOC's flags and the metadata after its entries: MAPPED with this connection's arena proof (the node skips
    zeroing), TTL with seconds (only on a node that granted ARENA_PROOF too: an older node refuses TTL on ALLOC)."""
    flags = (P.Flag.MAPPED if conn.arena_proof is not None else 0) | (P.Flag.TTL if ttl_seconds is not None else 0)
    return int(flags), (b"" if ttl_seconds is None else struct.pack("<I", ttl_seconds)) + bytes(conn.arena_proof or b"")


def alloc_request(conn, keys, lengths, ttl_seconds=None):
    """ALLOC's flags and metadata (:func:`alloc_suffix`) for the keys (bytes) and value lengths."""
    flags, suffix = alloc_suffix(conn, ttl_seconds)
    return flags, P.encode_alloc_request(keys, lengths) + suffix


def alloc_chunk(conn, mapping, keys, values, lengths, results, idx, ttl_seconds=None, value_crc: bool = False):
    """ALLOC space for the keys ``idx``, copy each value in, COMMIT. Codes go to ``results``. No
    value is copied once its reservation may have expired (TIMEOUT: that space may be another
    key's by then); COMMIT answering NOT_FOUND (the reservation expired) is TIMEOUT too. ``value_crc``:
    COMMIT carries each value's CRC-32C (on a node that granted ARENA_PROOF), checked by the node before
    its first read; otherwise a node that saw this connection's arena proof computes it then itself.
    The keys are reserved in pieces that fit the connection's reservation budget (see :mod:`.reserve`)."""
    budget = reserve.budget_of(conn, mapping)
    todo = list(idx)
    while todo:
        at, size, limit = 1, lengths[todo[0]], budget.limit
        while at < len(todo) and size + lengths[todo[at]] <= limit:
            size += lengths[todo[at]]
            at += 1
        piece, todo = todo[:at], todo[at:]
        others = budget.acquire(size, broken=lambda: conn.broken)
        try:
            todo = _alloc_piece(conn, mapping, keys, values, lengths, results, piece, others, budget, ttl_seconds, value_crc) + todo
        finally:
            budget.release(size)


def _alloc_piece(conn, mapping, keys, values, lengths, results, idx, others, budget, ttl_seconds, value_crc):
    """One ALLOC → copies → COMMIT of :func:`alloc_chunk`; returns the keys to ask for again (refused for the share)."""
    sent = time.monotonic()
    flags, meta = alloc_request(conn, [keys[i] for i in idx], [lengths[i] for i in idx], ttl_seconds)
    reply = conn.call(P.Opcode.ALLOC, meta, flags=flags)
    if len(reply.entries) != len(idx):
        raise _Failure(E.PROTOCOL_ERROR, "ALLOC reply with a wrong count")
    retry, accepted = reserve.refused_for_share([e.status for e in reply.entries], [lengths[i] for i in idx], others)
    if retry:
        budget.learn(accepted)
    again = {idx[pos] for pos in retry}
    ids, owners = [], []
    for i, e in zip(idx, reply.entries):
        if i in again:
            continue
        if e.status != P.WireStatus.OK:
            results[i] = _code(e.status)
            continue
        if not mapping.held(sent):
            results[i] = E.TIMEOUT   # not committed: the node drops the reservation
            continue
        mapping.copy_in(e.offset, values[i])
        ids.append(e.reservation_id)
        owners.append(i)
    if ids:
        crcs = [crc_of(values[i], lengths[i]) for i in owners] if value_crc and conn.arena_features else None
        committed = conn.call(P.Opcode.COMMIT, P.encode_commit(ids, crcs), flags=int(P.Flag.COMMIT_CRC) if crcs is not None else 0)
        for i, st in zip(owners, committed.statuses):
            results[i] = E.OK if st == P.WireStatus.OK else E.TIMEOUT if st == P.WireStatus.NOT_FOUND else _code(st)
    return [idx[pos] for pos in retry]
