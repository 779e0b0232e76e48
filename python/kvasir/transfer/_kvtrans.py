"""The transfer engine's two-sided calls (KVTrans: reg_kv, send_kv, recv_kv; docs/transfer.md), as a mixin of
:class:`kvasir.transfer.engine.Engine`: each reg_kv buffer is announced to the peer with KV_READY, and a send waits for
the peer's latest one."""

import time
from typing import Optional, Tuple

from . import _wire
from ._session import Session
from .regions import DeviceRange, TransferError, api as _api, describe_buffer, raw_view, tensor_device, typed_view


class _Kv:
    """One reg_kv buffer: its tag on the connection and the generation of our latest KV_READY."""

    def __init__(self, kv_id: int, session: Session, tag: int, mr_id: int, advert: _wire.Advertisement):
        self.kv_id = kv_id
        self.session = session
        self.tag = tag
        self.mr_id = mr_id
        self.advert = advert
        self.generation = 1
        self.received: Optional[int] = None


class KvTransCalls:
    """reg_kv / send_kv / recv_kv over the engine's sessions, regions and lock (``self._lock``, ``self._kv``)."""

    @_api(False, None)
    def reg_kv(self, conn_id: int, data) -> Tuple[bool, Optional[int]]:
        session = self._session(conn_id)
        ptr, size = describe_buffer(data)
        mr_id = self._regions.reg(data)
        try:
            adv = _wire.decode_advertisement(self._regions.advertise(conn_id, mr_id, ptr, size))
            with self._lock:
                kv = _Kv(self._next_id, session, session.next_tag, mr_id, adv)
                self._next_id += 1
                session.next_tag += 1
                session.kv_local[kv.tag] = kv
                self._kv[kv.kv_id] = kv
            self._send_ready(kv)
        except TransferError:
            self._regions.dereg(mr_id, self.timeout)
            raise
        return True, kv.kv_id

    def _send_ready(self, kv: _Kv) -> None:
        a = kv.advert
        self._request(kv.session, _wire.KV_READY,
                      _wire.encode_kv_ready(_wire.KvReady(kv.tag, kv.generation, a.advert_id, a.token, a.size)))

    def _kv_entry(self, kv_id: int) -> _Kv:
        with self._lock:
            kv = self._kv.get(kv_id)
        if kv is None:
            raise TransferError(f"unknown kv_id {kv_id}")
        if kv.session.closed is not None:
            raise TransferError(kv.session.closed)
        return kv

    def _wait(self, cond, what: str, session: Session):
        """Waits (engine lock held by the caller) until ``cond()`` is truthy; the timeout or a closed session fail it."""
        deadline = time.monotonic() + self.timeout
        while True:
            got = cond()
            if got:
                return got
            if session.closed is not None:
                raise TransferError(session.closed)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransferError(f"timed out after {self.timeout:g} s waiting for {what}")
            self._lock.wait(left)

    @_api(False)
    def send_kv(self, kv_id: int, data) -> bool:
        kv = self._kv_entry(kv_id)
        session = kv.session
        ptr, size = describe_buffer(data)
        if size < 1:
            raise TransferError("send_kv needs at least 1 byte")
        with self._lock:
            def fresh():
                r = session.remote_ready.get(kv.tag)
                return r if r is not None and r.kv_generation > session.used_generation.get(kv.tag, 0) else None
            ready = self._wait(fresh, f"the peer's KV_READY of tag {kv.tag}", session)
            if ready.capacity < size:
                raise TransferError(f"{_wire.status_name(_wire.TOO_LARGE)}: message of {size} bytes is above the "
                                    f"peer's buffer of {ready.capacity} bytes (tag {kv.tag})")
            session.used_generation[kv.tag] = ready.kv_generation
        adv = _wire.Advertisement(session.peer_engine, ready.advert_id, ready.token, ready.capacity, 0)
        device = tensor_device(data)
        local = raw_view(ptr, size) if device is None else DeviceRange(ptr, size, device)
        t = self._launch(_wire.WRITE, session, local, adv, b"", kv.tag, ready.kv_generation)
        return self._finish([t])

    @_api(False, None)
    def recv_kv(self, kv_id: int, max_size: int):
        kv = self._kv_entry(kv_id)
        with self._lock:
            length = self._wait(lambda: kv.received, f"a message of tag {kv.tag}", kv.session)
            kv.received = None
            kv.generation += 1
        region = self._regions.region(kv.mr_id)
        self._send_ready(kv)
        if length > max_size:
            raise TransferError(f"message of {length} bytes is above max_size {max_size}")
        return True, typed_view(region.owner, region.view, length)
