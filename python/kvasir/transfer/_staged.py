"""GPU windows of a same-host peer through shared memory (docs/transfer.md § GPU memory on the same host).

A target that advertises a CUDA region to a peer on its host adds the **staging extension**: the connection's staging
file in /dev/shm (``slot_count`` slots of ``slot_bytes``), mapped and registered for DMA (cudaHostRegister) once. The
initiator maps the same file and moves each slot-sized piece of a transfer through it:

* write: the initiator copies the piece into a free slot (a memcpy, or one DMA from its own GPU memory) and sends
  ``STAGED_WRITE``; the target copies the slot into its GPU window with **one DMA** on the lane's stream and replies
  only once that copy finished (so the initiator's completion, the notification and ``recv_kv`` come after it);
* read: the initiator sends ``STAGED_READ`` naming a free slot; the target DMAs the window into it and replies once
  the copy finished; the initiator copies the slot into its buffer.

No bytes go over the lanes. A slot is reused only after the reply that frees it. The initiator's slots are filled
and requested by a thread of the connection (never by a lane's thread: a lane must not wait for a slot). When the
target cannot make or register the file, it advertises without the extension (the lanes carry the slices) and logs
the reason once; when the initiator cannot map it, it uses the lanes too.

Both files' mappings end (unregistered first, then unmapped) only when the connection closed and no copy into or out
of them is in flight."""

import collections
import ctypes
import logging
import mmap
import os
import threading
import time
from typing import Callable, Deque, Dict, List, Optional

from . import _staging, _wire
from ._gpu import address_of
from ._lanes import Lane, Pending
from ._session import Session, Transfer
from ._shm import SHM_DIR, SharedFile
from .regions import DeviceRange, TransferError

log = logging.getLogger("kvasir")


class _Mapped:
    """A host range other threads copy into or out of: finished (unregistered, then unmapped) by ``release`` only
    once it is closed and no copy is in flight."""

    def __init__(self, finish: Callable[[], None]):
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        self._finish = finish
        self._pinned = False
        self._pin_tried = False

    def pin(self, base: int, length: int) -> Optional[str]:
        """Registers the range for DMA, tried once: None when registered, else why not."""
        with self._lock:
            if self._pin_tried:
                return None if self._pinned else "its registration failed before"
            self._pin_tried = True
            reason = _staging.pin(base, length)
            self._pinned = reason is None
            return reason

    def hold(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
            last = self._closed and self._busy == 0
        if last:
            self._end()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            last = self._busy == 0
        if last:
            self._end()

    def _end(self) -> None:
        if self._pinned:
            self._pinned = False
            _staging.unpin(self.base)
        self._finish()


class TargetStaging(_Mapped):
    """Target side, one per connection: the staging file its same-host peer moves slices through."""

    def __init__(self, file: SharedFile, slot_bytes: int, slot_count: int):
        super().__init__(file.close)
        self.file = file
        self.base = file.address
        self.size = slot_bytes * slot_count
        self.extension = _wire.Staging(file.path, slot_bytes, slot_count)

    def take(self, offset: int, length: int) -> int:
        """The address of [offset, +length) of the file, held until :meth:`release`; OUT_OF_BOUNDS outside it."""
        if offset + length > self.size:
            raise _wire.FrameError(_wire.OUT_OF_BOUNDS, f"staging range [{offset}, +{length}) is outside the "
                                                        f"connection's staging file of {self.size} bytes")
        if not self.hold():
            raise ConnectionError("the connection's staging file is closed")
        return self.base + offset


class _Job:
    def __init__(self, kind: int, transfer: Transfer, local, adv: _wire.Advertisement, remote_offset: int,
                 notif: bytes, kv_tag: int, kv_generation: int):
        self.kind, self.transfer, self.local, self.adv = kind, transfer, local, adv
        self.remote_offset, self.notif, self.kv_tag, self.kv_generation = remote_offset, notif, kv_tag, kv_generation


class Stager(_Mapped):
    """Initiator side, one per connection: the peer's staging file mapped, its free slots, and the thread that fills a
    free slot (or names it, for a read) and sends the request for it."""

    def __init__(self, session: Session, ext: _wire.Staging, mapping: mmap.mmap):
        super().__init__(self._unmap)
        self.session = session
        self.ext = ext
        self._map = mapping
        self.base = address_of(memoryview(mapping))
        self._cond = threading.Condition()
        self._free: List[int] = list(range(ext.slot_count))
        self._jobs: Deque[_Job] = collections.deque()
        self._stopping = False
        self._copiers: Dict[int, _staging.Copier] = {}
        self._thread = threading.Thread(target=self._run, name=f"xfer-c{session.conn_id}-stager", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, session: Session, ext: _wire.Staging) -> Optional["Stager"]:
        """The peer's staging file mapped; None when it cannot be (another host, a file gone): use the lanes."""
        size = ext.slot_bytes * ext.slot_count
        if not ext.path.startswith(SHM_DIR + "/") or "/../" in ext.path:
            return None
        try:
            fd = os.open(ext.path, os.O_RDWR)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < size:
                return None
            return cls(session, ext, mmap.mmap(fd, size))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _unmap(self) -> None:
        try:
            self._map.close()
        except BufferError:
            pass

    def submit(self, job: _Job) -> None:
        with self._cond:
            if not self._stopping:
                self._jobs.append(job)
                self._cond.notify_all()
                return
        job.transfer.fail(self.session.closed or "the connection closed")

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            jobs, self._jobs = list(self._jobs), collections.deque()
            self._cond.notify_all()
        super().close()
        for job in jobs:
            job.transfer.fail(self.session.closed or "the connection closed")

    # ---- slots ---------------------------------------------------------------------------------------------
    def _slot(self, deadline: float) -> Optional[int]:
        with self._cond:
            while not self._free and not self._stopping and self.session.closed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
            if self._stopping or self.session.closed is not None or not self.hold():
                return None
            return self._free.pop()

    def _give(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._cond.notify_all()
        self.release()

    def _copier(self, device: int) -> _staging.Copier:
        c = self._copiers.get(device)
        if c is None:
            c = self._copiers[device] = _staging.make_copier(device)
        return c

    # ---- the thread ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait(1.0)
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                self._pieces(job)
            except TransferError as e:
                job.transfer.fail(str(e))
            except Exception as e:  # noqa: BLE001 - a bug fails this transfer, never the thread the others wait on
                job.transfer.fail(f"internal error staging a transfer: {e!r}")

    def _pieces(self, job: _Job) -> None:
        size, step = len(job.local), self.ext.slot_bytes
        for off in range(0, size, step):
            n = min(step, size - off)
            t = job.transfer
            if t.done.is_set():
                return   # failed: the pieces not sent yet are never sent
            slot = self._slot(t.deadline)
            if slot is None:
                t.fail(self.session.closed or ("the staging file was replaced" if self._stopping
                                               else f"no staging slot came free within {t.timeout:g} s"))
                return
            host = self.base + slot * step
            piece = job.local[off:off + n]
            try:
                if isinstance(piece, DeviceRange):
                    self.pin(self.base, len(self._map))   # pinned once; copies are still right (slower) if it fails
                if job.kind == _wire.WRITE:
                    self._fill(host, piece)
            except BaseException:
                self._give(slot)
                raise
            lane = self.session.next_lane()
            if job.kind == _wire.WRITE:
                meta = _wire.encode_staged_write(_wire.StagedWrite(slot * step, n, _wire.WriteSlice(
                    job.adv.advert_id, job.adv.token, job.remote_offset, size, off, job.kv_tag, job.kv_generation,
                    job.notif if off == 0 else b"")))
                op = StagedWriteOp(t, off, slot, self._give)
            else:
                meta = _wire.encode_staged_read(_wire.StagedRead(slot * step, _wire.ReadSlice(
                    job.adv.advert_id, job.adv.token, job.remote_offset + off, n)))
                op = StagedReadOp(t, piece, slot, host, self._give)
            lane.request(op, _wire.encode_header(op.opcode, t.transfer_id, len(meta)) + meta)

    def _fill(self, host: int, piece) -> None:
        if isinstance(piece, DeviceRange):   # one DMA from our GPU memory into the slot
            copier = self._copier(piece.device)
            copier.wait(copier.start(host, piece.ptr, piece.size))
        else:
            ctypes.memmove(host, address_of(piece), len(piece))


class StagedWriteOp(Pending):
    def __init__(self, transfer: Transfer, slice_offset: int, slot: int, give: Callable[[int], None]):
        super().__init__(_wire.STAGED_WRITE, transfer.transfer_id)
        self.transfer, self.slice_offset, self._slot, self._give = transfer, slice_offset, slot, give

    def on_reply(self, lane: Lane, header: _wire.Header, meta: bytes) -> None:
        self._give(self._slot)   # the target's copy out of the slot finished before it replied
        if _wire.decode_write_reply(meta) != self.slice_offset:
            raise _wire.FrameError(_wire.BAD_FRAME, "STAGED_WRITE reply names another slice than the one sent")
        if header.payload_length:
            raise _wire.FrameError(_wire.BAD_FRAME, "a STAGED_WRITE reply carries a payload")
        if header.status == _wire.OK:
            self.transfer.slice_done()
        else:
            self.transfer.fail(f"target refused the piece at offset {self.slice_offset}: {_wire.status_name(header.status)}")

    def on_fail(self, reason: str) -> None:
        self._give(self._slot)
        self.transfer.fail(reason)


class StagedReadOp(Pending):
    def __init__(self, transfer: Transfer, dest, slot: int, host: int, give: Callable[[int], None]):
        super().__init__(_wire.STAGED_READ, transfer.transfer_id)
        self.transfer, self.dest, self._slot, self._host, self._give = transfer, dest, slot, host, give

    def on_reply(self, lane: Lane, header: _wire.Header, meta: bytes) -> None:
        if header.payload_length or meta:
            self._give(self._slot)
            raise _wire.FrameError(_wire.BAD_FRAME, "a STAGED_READ reply carries data")
        if header.status != _wire.OK or self.transfer.failed:
            self._give(self._slot)
            if header.status != _wire.OK:
                self.transfer.fail(f"target refused a piece: {_wire.status_name(header.status)}")
            return
        if isinstance(self.dest, DeviceRange):   # one DMA from the slot into our GPU memory, counted once it finished
            try:
                lane.gpu.copy(self.dest.device, self.dest.ptr, self._host, self.dest.size, self._copied)
            except BaseException:
                self._give(self._slot)
                raise
            return
        ctypes.memmove(address_of(self.dest), self._host, len(self.dest))
        self._give(self._slot)
        self.transfer.slice_done()

    def _copied(self, error: Optional[str]) -> None:
        self._give(self._slot)
        if error is None:
            self.transfer.slice_done()
        else:
            self.transfer.fail(error)

    def on_fail(self, reason: str) -> None:
        self._give(self._slot)
        self.transfer.fail(reason)


class SameHostGpu:
    """Engine mixin: the staging files of its connections, as target and as initiator (state in the Session:
    ``target_staging`` and ``stager``, each None until first needed, False once refused)."""

    def _init_staging(self, enabled: bool, slot_bytes: int, slots: int) -> None:
        if not 1 <= slot_bytes <= _wire.MAX_SLICE_LIMIT:
            raise ValueError(f"staging_slot_bytes must be 1..{_wire.MAX_SLICE_LIMIT} (64 MiB), got {slot_bytes}")
        if not 1 <= slots <= 256:
            raise ValueError(f"staging_slots must be 1..256, got {slots}")
        self.gpu_staging, self.staging_slot_bytes, self.staging_slots = bool(enabled), int(slot_bytes), int(slots)
        self.staging_refused: Optional[str] = None   # why a staging file could not be offered (logged once)

    # ---- target side -----------------------------------------------------------------------------------------
    def _staging_offer(self, session: Session, region) -> Optional[_wire.Staging]:
        """The staging extension for an advertisement of ``region`` on ``session``: only for GPU memory, only to a
        peer known to be on this host; None (the lanes) when the file cannot be made or registered."""
        if not self.gpu_staging or region.device is None or session.peer_host != self.host_id:
            return None
        with session.lock:
            stg = session.target_staging
            if stg is None:
                stg = session.target_staging = self._make_staging(session) or False
        return stg.extension if stg else None

    def _make_staging(self, session: Session) -> Optional[TargetStaging]:
        try:
            f = SharedFile(self.staging_slot_bytes * self.staging_slots, self.engine_id, self._new_id())
        except OSError as e:
            self._refused(f"cannot make a staging file of {self.staging_slot_bytes * self.staging_slots} bytes "
                          f"in {SHM_DIR}: {e.strerror}")
            return None
        stg = TargetStaging(f, self.staging_slot_bytes, self.staging_slots)
        reason = stg.pin(stg.base, stg.size)
        if reason is not None:
            f.close()
            self._refused(reason)
            return None
        if session.closed is not None:
            stg.close()
            return None
        return stg

    def _refused(self, reason: str) -> None:
        if self.staging_refused is None:
            self.staging_refused = reason
            log.warning("kvasir transfer: GPU windows go over the lanes, not through shared memory, for same-host "
                        "peers: %s (logged once)", reason)

    def _on_staged(self, session: Session, lane: Lane, h: _wire.Header, meta: bytes) -> None:
        """STAGED_WRITE / STAGED_READ: checked as WRITE / READ, then the staging range; one copy between the slot
        and the window; the reply leaves once that copy finished (behind the lane's earlier replies)."""
        if h.opcode == _wire.STAGED_WRITE:
            sw = _wire.decode_staged_write(meta)
            w, stage_at, n = sw.write, sw.staging_offset, sw.length
            check = (w.advert_id, w.token, w.window_offset, n, w.transfer_length, w.slice_offset)
            reply_meta = _wire.encode_write_reply(w.slice_offset)
        else:
            sr = _wire.decode_staged_read(meta)
            r, stage_at, n = sr.read, sr.staging_offset, sr.read.length
            check = (r.advert_id, r.token, r.offset, n)
            reply_meta = b""
        if session.peer_host != self.host_id:
            raise _wire.FrameError(_wire.BAD_FRAME, f"{_wire.OPCODE_NAMES[h.opcode]} from a peer not known to be on this host")
        stg = session.target_staging
        try:
            landing = self._regions.begin(session.conn_id, *check)
        except _wire.FrameError as e:
            lane.reply(_wire.encode_frame(h.opcode, h.request_id, reply_meta, reply=True, status=e.status))
            return
        try:
            if not stg:
                raise _wire.FrameError(_wire.OUT_OF_BOUNDS, "this connection has no staging file")
            host = stg.take(stage_at, n)
        except _wire.FrameError as e:
            landing.end()
            lane.reply(_wire.encode_frame(h.opcode, h.request_id, reply_meta, reply=True, status=e.status))
            return
        except BaseException:
            landing.end()
            raise

        def copied(error: Optional[str], ordered: bool = False) -> None:
            landing.end()
            stg.release()
            if error is not None:
                lane.close(error)   # the initiator's transfer fails; nothing is acknowledged
                return
            if h.opcode == _wire.STAGED_WRITE:
                done = session.land(h.request_id, w, n)
                if done is not None:
                    self._delivered(session, done)
            reply = _wire.encode_frame(h.opcode, h.request_id, reply_meta, reply=True)
            (lane.reply if ordered else lane.send_reply)(reply)

        view = landing.view
        writing = h.opcode == _wire.STAGED_WRITE
        try:
            if isinstance(view, DeviceRange):
                lane.gpu.copy(view.device, view.ptr if writing else host, host if writing else view.ptr, n, copied)
                return
            if writing:
                ctypes.memmove(address_of(view), host, n)
            else:
                ctypes.memmove(host, address_of(view), n)
        except BaseException:
            landing.end()
            stg.release()
            raise
        copied(None, ordered=True)

    # ---- initiator side --------------------------------------------------------------------------------------
    def _through_staging(self, kind: int, session: Session, local, adv: _wire.Advertisement, notif: bytes,
                         kv_tag: int, kv_generation: int, remote_offset: int) -> Optional[Transfer]:
        """A write or read of a peer's GPU window through its staging file; None when the file does not map."""
        with session.lock:
            stager = session.stager
            if stager is None or (stager and stager.ext != adv.staging):
                if stager:
                    stager.close()
                stager = session.stager = Stager.open(session, adv.staging) or False
                if session.closed is not None and stager:
                    stager.close()
                    return None
        if not stager:
            return None
        size = len(local)
        name = "write" if kind == _wire.WRITE else "read"
        t = Transfer(self._new_id(), session, -(-size // adv.staging.slot_bytes), self.timeout,
                     f"staged {name} of {size} bytes on {session.describe()}")
        self.shm_transfers += 1
        stager.submit(_Job(kind, t, local, adv, remote_offset, notif, kv_tag, kv_generation))
        return t

    @staticmethod
    def _close_staging(session: Session) -> None:
        """The connection closed: both files end once no copy into or out of them is in flight."""
        with session.lock:
            parts = [session.target_staging, session.stager]
        for p in parts:
            if p:
                p.close()
