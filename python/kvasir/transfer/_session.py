"""A connection (docs/transfer.md § Model): a session of lanes to one peer engine, the transfers in
flight on it, and its two-sided (KVTrans) bookkeeping. Owned by the engine: ``closed`` and the landing
table are guarded by the session's lock; ``next_tag``, ``remote_ready``, ``used_generation`` and
``kv_local`` by the engine's lock (their waiters wait on it)."""

import itertools
import threading
import time
from typing import Callable, Dict, List, Optional

from . import _wire
from ._lanes import Lane, Pending
from .regions import DeviceRange


class Transfer:
    """One write or read: completes when every slice was acknowledged, fails as a whole otherwise."""

    def __init__(self, transfer_id: int, session: "Session", slices: int, timeout: float, what: str):
        self.transfer_id = transfer_id
        self.session = session
        self.what = what
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._remaining = slices
        self.error: Optional[str] = None
        self.done = threading.Event()
        if slices == 0:
            self.done.set()

    def slice_done(self) -> None:
        with self._lock:
            if self.error is not None:
                return
            self._remaining -= 1
            if self._remaining == 0:
                self.done.set()

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.error is not None or (self.done.is_set() and self._remaining == 0):
                return
            self.error = f"{self.what} failed: {reason}"
            self.done.set()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def expire_if_late(self) -> None:
        """Past its deadline and not done: fails, and closes the session, whose lanes are then in an
        unknown state (so no late byte of a read lands in the caller's buffer after the failure)."""
        if not self.done.is_set() and time.monotonic() >= self.deadline:
            self.fail(f"timed out after {self.timeout:g} s")
            self.session.close(f"{self.what} timed out after {self.timeout:g} s")

    def wait(self) -> bool:
        self.done.wait(max(0.0, self.deadline - time.monotonic()))
        self.expire_if_late()
        return self.error is None


class WriteSliceOp(Pending):
    def __init__(self, transfer: Transfer, slice_offset: int):
        super().__init__(_wire.WRITE, transfer.transfer_id)
        self.transfer = transfer
        self.slice_offset = slice_offset

    def on_reply(self, lane: Lane, header: _wire.Header, meta: bytes) -> None:
        if _wire.decode_write_reply(meta) != self.slice_offset:
            raise _wire.FrameError(_wire.BAD_FRAME, "WRITE reply names another slice than the one sent")
        if header.status == _wire.OK:
            self.transfer.slice_done()
        else:
            self.transfer.fail(f"target refused the slice at offset {self.slice_offset}: {_wire.status_name(header.status)}")

    def on_fail(self, reason: str) -> None:
        self.transfer.fail(reason)


class ReadSliceOp(Pending):
    def __init__(self, transfer: Transfer, dest):
        super().__init__(_wire.READ, transfer.transfer_id)
        self.transfer = transfer
        self.dest = dest

    def on_reply(self, lane: Lane, header: _wire.Header, meta: bytes) -> None:
        if header.status != _wire.OK:
            if header.payload_length or meta:
                raise _wire.FrameError(_wire.BAD_FRAME, "a refused READ reply carries data")
            self.transfer.fail(f"target refused a slice: {_wire.status_name(header.status)}")
            return
        if meta or header.payload_length != len(self.dest):
            raise _wire.FrameError(_wire.BAD_FRAME, f"READ reply of {header.payload_length} bytes to a request of {len(self.dest)}")
        if self.transfer.failed:
            lane.drain(header.payload_length)
        elif isinstance(self.dest, DeviceRange):   # counted once its copy to GPU memory finished
            lane.recv_to_device(self.dest, self._copied)
        else:
            lane.recv_into(self.dest)
            self.transfer.slice_done()

    def _copied(self, error: Optional[str]) -> None:
        if error is None:
            self.transfer.slice_done()
        else:
            self.transfer.fail(error)

    def on_fail(self, reason: str) -> None:
        self.transfer.fail(reason)


class SimpleOp(Pending):
    """NOTIFY and KV_READY: an empty OK reply."""

    def __init__(self, opcode: int, request_id: int):
        super().__init__(opcode, request_id)
        self.done = threading.Event()
        self.error: Optional[str] = None

    def on_reply(self, lane: Lane, header: _wire.Header, meta: bytes) -> None:
        if header.payload_length or meta:
            raise _wire.FrameError(_wire.BAD_FRAME, f"{_wire.OPCODE_NAMES[self.opcode]} reply carries data")
        if header.status != _wire.OK:
            self.error = f"peer refused {_wire.OPCODE_NAMES[self.opcode]}: {_wire.status_name(header.status)}"
        self.done.set()

    def on_fail(self, reason: str) -> None:
        self.error = reason
        self.done.set()


class Landed:
    """Target side: the bytes of one incoming write that landed so far."""

    def __init__(self, w: _wire.WriteSlice):
        self.length = w.transfer_length
        self.kv_tag = w.kv_tag
        self.kv_generation = w.kv_generation
        self.advert_id = w.advert_id
        self.notif: Optional[bytes] = None
        self.bytes = 0


class Session:
    def __init__(self, conn_id: int, lanes: List[Lane], peer_addr, peer_engine: bytes, peer_host: bytes,
                 peer_max_slice: int, on_closed: Callable[["Session", str], None]):
        self.conn_id = conn_id
        self.lanes = lanes
        self.peer_addr = peer_addr
        self.peer_engine = peer_engine
        self.peer_host = peer_host
        self.peer_max_slice = peer_max_slice
        self._on_closed = on_closed
        self.lock = threading.Condition()
        self.closed: Optional[str] = None
        self._rr = itertools.count()
        self._landing: Dict[int, Landed] = {}
        self.next_tag = 1
        self.remote_ready: Dict[int, _wire.KvReady] = {}
        self.used_generation: Dict[int, int] = {}
        self.kv_local: Dict[int, object] = {}  # our reg_kv buffers on this connection, by tag
        # same-host GPU windows (_staged.py), guarded by ``lock``: None until first needed, False once refused
        self.target_staging = None   # the staging file we offer the peer
        self.stager = None           # the peer's staging file, mapped, and the thread that uses it
        self.socket_buffers: List[Optional[int]] = []   # per lane: the SO_SNDBUF/SO_RCVBUF set (_paths.apply), None: the kernel's

    def describe(self) -> str:
        return f"connection {self.conn_id} to {self.peer_addr[0]}:{self.peer_addr[1]}"

    def next_lane(self) -> Lane:
        return self.lanes[next(self._rr) % len(self.lanes)]

    def lane_lost(self, lane: Lane, reason: str) -> None:
        self.close(reason)

    def close(self, reason: str) -> None:
        """Closes every lane (a session never runs with fewer lanes than it was opened with)."""
        with self.lock:
            if self.closed is not None:
                return
            self.closed = reason if reason.startswith(self.describe()) else f"{self.describe()} closed ({reason})"
            self._landing.clear()
            self.lock.notify_all()
        for lane in self.lanes:
            lane.close(self.closed)
        self._on_closed(self, self.closed)

    def land(self, transfer_id: int, w: _wire.WriteSlice, n: int) -> Optional[Landed]:
        with self.lock:
            rec = self._landing.get(transfer_id)
            if rec is None:
                rec = self._landing[transfer_id] = Landed(w)
            if w.slice_offset == 0:
                rec.notif = w.notif
            rec.bytes += n
            if rec.bytes < rec.length:
                return None
            del self._landing[transfer_id]
            return rec
