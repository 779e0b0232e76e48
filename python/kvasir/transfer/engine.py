"""The transfer engine (docs/transfer.md): KVTrans's two-sided calls and UCCL P2P's one-sided calls
over sessions of TCP lanes. Every public call returns its documented tuple; on failure the first
element is False and ``last_error`` holds the one-line reason."""

import functools
import os
import queue
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

from .. import auth
from . import _handshake, _paths, _wire, layers
from ._kvtrans import KvTransCalls, _Kv
from ._lanes import Lane
from ._listener import Listener, read_host_id, resolve_interface
from ._shm import SHM_DIR, Mappings, SharedFile
from ._session import ReadSliceOp, Session, SimpleOp, Transfer, WriteSliceOp
from ._staged import SameHostGpu
from .regions import DeviceRange, RegionTable, TransferError, api as _api, describe_buffer

HANDSHAKE_TIMEOUT = 10.0


class Engine(KvTransCalls, SameHostGpu):
    def __init__(self, if_name: str = "lo", ncpus: int = 1, nconn_per_cpu: int = 2, listen_port: int = 0, *,
                 auth_key=None, slice_bytes: int = 1 << 20, timeout: float = 30.0, gpu_staging: bool = True,
                 staging_slot_bytes: int = 4 << 20, staging_slots: int = 4, socket_buffer: Optional[int] = None):
        """``gpu_staging``: offer same-host peers a staging file for this engine's GPU windows (docs/transfer.md
        § GPU memory on the same host), ``staging_slots`` x ``staging_slot_bytes`` per connection; False: the lanes.
        ``socket_buffer``: every lane socket's SO_SNDBUF/SO_RCVBUF once its handshake is done; None (default) 512 KiB
        on a short path (loopback, or a round trip of <= 100 us) and the kernel's autotuning elsewhere, 0 the kernel's
        autotuning on every lane, a size (64 KiB..256 MiB) fixed on every lane."""
        lanes = int(ncpus) * int(nconn_per_cpu)
        if ncpus < 1 or nconn_per_cpu < 1 or lanes > _wire.MAX_LANES:
            raise ValueError(f"ncpus x nconn_per_cpu must be 1..{_wire.MAX_LANES} lanes (got {ncpus} x {nconn_per_cpu})")
        if not 1 <= slice_bytes <= _wire.MAX_SLICE_LIMIT:
            raise ValueError(f"slice_bytes must be 1..{_wire.MAX_SLICE_LIMIT} (64 MiB), got {slice_bytes}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds (got {timeout})")
        self._init_staging(gpu_staging, staging_slot_bytes, staging_slots)
        self.ncpus, self.nconn_per_cpu, self.lane_count = ncpus, nconn_per_cpu, lanes
        self.slice_bytes = slice_bytes
        self.socket_buffer = _paths.check_setting(socket_buffer)
        self.timeout = float(timeout)
        self.handshake_timeout = HANDSHAKE_TIMEOUT
        self._key = auth.parse_auth_key(auth_key) if auth_key is not None else None
        self.engine_id = os.urandom(16)
        self.host_id = read_host_id()
        self.ip = resolve_interface(if_name)
        self.last_error: Optional[str] = None
        self.shm_transfers = 0   # transfers that went through a same-host shared file, not the lanes
        self._gpu = None   # the _gpu.Gpu helper, made when a CUDA buffer is first moved
        self._mappings = Mappings(on_drop=lambda m: self._gpu.unpin(m) if self._gpu is not None else None)
        self._regions = RegionTable(self.engine_id)
        self._lock = threading.Condition()
        self._sessions: Dict[int, Session] = {}
        self._accepted: "queue.Queue[Optional[Session]]" = queue.Queue()
        self._async: Dict[int, Transfer] = {}
        self._kv: Dict[int, _Kv] = {}
        self._notifs: List[Tuple[int, bytes]] = []
        self._pulls: Dict[Tuple[int, int], layers.LayerPull] = {}   # per-layer pulls by (conn_id, tag)
        self._next_conn = 1
        self._next_id = 1
        self._closed = False
        self._listener = Listener(self.ip, listen_port, self.engine_id, slice_bytes, self._key, HANDSHAKE_TIMEOUT,
                                  self._accepted_session)
        self.port = self._listener.port

    # ---- lifecycle --------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions = list(self._sessions.values())
            self._lock.notify_all()
        self._accepted.put(None)
        self._listener.close()
        self._regions.unlink_shared()
        for s in sessions:
            s.close("engine closed")
        self._mappings.close()

    def _cuda(self):
        if self._gpu is None:
            from . import _gpu  # noqa: PLC0415 - only with CUDA tensors
            with self._lock:
                if self._gpu is None:
                    self._gpu = _gpu.Gpu()
        return self._gpu

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_id(self) -> int:
        with self._lock:
            n = self._next_id
            self._next_id += 1
            return n

    def _accepted_session(self, socks: List[socket.socket], addr, peer_engine: bytes, peer_host: bytes) -> None:
        # The acceptor slices what it sends at its own max_slice, the one it announced (docs/transfer.md § HELLO)
        self._accepted.put(self._open_session(socks, addr, peer_engine, peer_host, self.slice_bytes, self.slice_bytes))

    def _open_session(self, socks: List[socket.socket], addr, peer_engine: bytes, peer_host: Optional[bytes],
                      peer_max_slice: int, accept_payload: int) -> Session:
        """``peer_max_slice``: the largest slice we send; ``accept_payload``: the largest payload we take."""
        with self._lock:
            conn_id = self._next_conn
            self._next_conn += 1
        session = Session(conn_id, [], addr, peer_engine, peer_host, peer_max_slice, self._session_closed)
        # the handshake's round trips are what the kernel measured the path by
        session.socket_buffers = [_paths.apply(sock, self.socket_buffer) for sock in socks]
        for i, sock in enumerate(socks):
            session.lanes.append(Lane(sock, i, accept_payload, functools.partial(self._on_request, session),
                                      session.lane_lost, f"xfer{self.port}-c{conn_id}", session.describe()))
        with self._lock:
            self._sessions[conn_id] = session
        for lane in session.lanes:
            lane.start()
        return session

    def _session_closed(self, session: Session, reason: str) -> None:
        self._regions.drop_connection(session.conn_id)
        self._close_staging(session)
        with self._lock:
            pulls = [p for (conn, _), p in self._pulls.items() if conn == session.conn_id]
            self._lock.notify_all()
        for p in pulls:
            p.connection_closed(reason)

    # ---- sessions: initiator side -------------------------------------------------------------------------
    def _connect(self, ip: str, port: int, expect_engine: Optional[bytes] = None) -> Session:
        if self._closed:
            raise TransferError("engine is closed")
        session_id = os.urandom(16)
        socks: List[socket.socket] = []
        rep = None
        try:
            for i in range(self.lane_count):
                try:
                    sock = socket.create_connection((ip, port), timeout=self.handshake_timeout)
                except OSError as e:
                    raise TransferError(f"cannot connect to {ip}:{port}: {e.strerror or e}") from None
                socks.append(sock)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                hello = _wire.HelloRequest(_wire.VERSION, i, self.lane_count, session_id, self.engine_id, self.host_id)
                try:
                    rep = _handshake.client(sock, hello, self._key)
                except (OSError, ConnectionError) as e:
                    raise TransferError(f"handshake with {ip}:{port} failed on lane {i}: {e}") from None
                except _handshake.HandshakeError as e:
                    raise TransferError(f"{ip}:{port}: {e}") from None
                if expect_engine is not None and rep.engine_id != expect_engine:
                    raise TransferError(f"{ip}:{port} is engine {rep.engine_id.hex()}, not {expect_engine.hex()} "
                                        "named by the endpoint metadata")
        except TransferError:
            for s in socks:
                s.close()
            raise
        for s in socks:
            s.settimeout(None)
        # The target sends us slices up to the max_slice it announced; our reads ask for at most our own.
        return self._open_session(socks, (ip, port), rep.engine_id, None, min(rep.max_slice, self.slice_bytes),
                                  max(rep.max_slice, self.slice_bytes))

    def _session(self, conn_id) -> Session:
        with self._lock:
            s = self._sessions.get(conn_id)
        if s is None:
            raise TransferError(f"unknown conn_id {conn_id}")
        if s.closed is not None:
            raise TransferError(s.closed)
        return s

    @_api(False, None)
    def connect(self, ip: str, port: int) -> Tuple[bool, Optional[int]]:
        return True, self._connect(ip, int(port)).conn_id

    @_api(False, None, None, None)
    def accept(self, timeout: Optional[float] = None):
        """Blocks until a peer's session has all its lanes (or ``timeout`` seconds, None = forever)."""
        try:
            s = self._accepted.get(timeout=timeout)
        except queue.Empty:
            raise TransferError(f"no connection within {timeout:g} s") from None
        if s is None:
            self._accepted.put(None)
            raise TransferError("engine is closed")
        return True, s.peer_addr[0], s.peer_addr[1], s.conn_id

    def get_metadata(self) -> bytes:
        return _wire.encode_endpoint(_wire.Endpoint(self.ip, self.port, self.engine_id))

    @_api(False, None)
    def add_remote_endpoint(self, metadata) -> Tuple[bool, Optional[int]]:
        e = _wire.decode_endpoint(metadata)
        return True, self._connect(e.address, e.port, e.engine_id).conn_id

    def connection_error(self, conn_id: int) -> Optional[str]:
        """None while the connection is up; else why it closed."""
        with self._lock:
            s = self._sessions.get(conn_id)
        return f"unknown conn_id {conn_id}" if s is None else s.closed

    # ---- requests arriving on a lane (target side) --------------------------------------------------------
    def _on_request(self, session: Session, lane: Lane, h: _wire.Header, meta: bytes) -> None:
        if h.status != _wire.OK:
            raise _wire.FrameError(_wire.BAD_FRAME, "a request carries a status")
        if h.opcode == _wire.WRITE:
            self._on_write(session, lane, h, meta)
            return
        if h.payload_length:
            raise _wire.FrameError(_wire.BAD_FRAME, "a payload on a request that has none")
        if h.opcode == _wire.READ:
            self._on_read(session, lane, h, meta)
        elif h.opcode == _wire.NOTIFY:
            status, pull, note = _wire.OK, None, layers.decode_note(meta)
            if len(meta) > _wire.MAX_NOTIF:
                status = _wire.TOO_LARGE
            else:
                with self._lock:
                    pull = self._pulls.get((session.conn_id, note[0])) if note else None
                    if pull is None:
                        self._notifs.append((session.conn_id, meta))
                    self._lock.notify_all()
            lane.reply(_wire.encode_header(_wire.NOTIFY, h.request_id, 0, reply=True, status=status))
            if pull is not None:
                pull.announce(note[1])
        elif h.opcode == _wire.KV_READY:
            k = _wire.decode_kv_ready(meta)
            with self._lock:
                old = session.remote_ready.get(k.kv_tag)
                if old is None or k.kv_generation > old.kv_generation:
                    session.remote_ready[k.kv_tag] = k
                self._lock.notify_all()
            lane.reply(_wire.encode_header(_wire.KV_READY, h.request_id, 0, reply=True))
        elif h.opcode in (_wire.STAGED_WRITE, _wire.STAGED_READ):
            self._on_staged(session, lane, h, meta)
        elif h.opcode in (_wire.HELLO, _wire.AUTH):
            raise _wire.FrameError(_wire.BAD_SESSION, "HELLO or AUTH after the handshake")
        else:
            raise _wire.FrameError(_wire.UNKNOWN_OPCODE, f"unknown opcode 0x{h.opcode:02x}")

    def _on_write(self, session: Session, lane: Lane, h: _wire.Header, meta: bytes) -> None:
        w = _wire.decode_write(meta)
        n = h.payload_length
        span = n
        if n == 0:
            if session.peer_host != self.host_id:
                raise _wire.FrameError(_wire.BAD_FRAME, "a zero-length WRITE from another host")
            if w.slice_offset:
                raise _wire.FrameError(_wire.BAD_FRAME, "a zero-length WRITE must have slice_offset 0")
            span = w.transfer_length
        try:
            landing = self._regions.begin(session.conn_id, w.advert_id, w.token, w.window_offset, span,
                                          w.transfer_length, w.slice_offset)
        except _wire.FrameError as e:
            status = e.status
        else:
            status = _wire.OK
            if n and isinstance(landing.view, DeviceRange):
                self._write_to_device(session, lane, h, w, landing)
                return
            try:
                if n:
                    lane.recv_into(landing.view)
            finally:
                landing.end()
        if status != _wire.OK:
            lane.drain(n)
        else:
            done = session.land(h.request_id, w, span)
            if done is not None:
                self._delivered(session, done)
        lane.reply(_wire.encode_frame(_wire.WRITE, h.request_id, _wire.encode_write_reply(w.slice_offset),
                                      reply=True, status=status))

    def _write_to_device(self, session: Session, lane: Lane, h: _wire.Header, w: _wire.WriteSlice, landing) -> None:
        """A slice for GPU memory: received into the lane's pinned ring, copied to the GPU; acknowledged (and the
        transfer counted as landed) only once that copy finished."""
        def copied(error: Optional[str]) -> None:
            landing.end()
            if error is not None:
                lane.close(error)   # the initiator's transfer fails; nothing is acknowledged
                return
            done = session.land(h.request_id, w, h.payload_length)
            if done is not None:
                self._delivered(session, done)
            lane.send_reply(_wire.encode_frame(_wire.WRITE, h.request_id, _wire.encode_write_reply(w.slice_offset),
                                               reply=True))
        try:
            lane.recv_to_device(landing.view, copied)
        except BaseException:
            landing.end()
            raise

    def _delivered(self, session: Session, done) -> None:
        with self._lock:
            if done.notif:
                self._notifs.append((session.conn_id, done.notif))
            if done.kv_tag:
                kv = session.kv_local.get(done.kv_tag)
                if kv is not None and kv.advert.advert_id == done.advert_id and kv.generation == done.kv_generation:
                    kv.received = done.length
            self._lock.notify_all()

    def _on_read(self, session: Session, lane: Lane, h: _wire.Header, meta: bytes) -> None:
        r = _wire.decode_read(meta)
        if r.length > lane.max_payload:
            raise _wire.FrameError(_wire.FRAME_TOO_LARGE, f"READ of {r.length} bytes is above max_slice {lane.max_payload}")
        try:
            landing = self._regions.begin(session.conn_id, r.advert_id, r.token, r.offset, r.length)
        except _wire.FrameError as e:
            lane.reply(_wire.encode_header(_wire.READ, h.request_id, 0, reply=True, status=e.status))
            return
        lane.reply(_wire.encode_header(_wire.READ, h.request_id, 0, r.length, reply=True), landing.view, landing.end)

    # ---- regions -------------------------------------------------------------------------------------------
    @_api(False, None)
    def reg(self, ptr, size: Optional[int] = None) -> Tuple[bool, Optional[int]]:
        return True, self._regions.reg(ptr, size)

    @_api(False)
    def dereg(self, mr_id: int) -> bool:
        self._regions.dereg(mr_id, self.timeout)
        return True

    @_api(False, None)
    def advertise(self, conn_id: int, mr_id: int, ptr, size: int) -> Tuple[bool, Optional[bytes]]:
        session = self._session(conn_id)
        staging = self._staging_offer(session, self._regions.region(mr_id))
        return True, self._regions.advertise(session.conn_id, mr_id, _address(ptr), int(size),
                                             session.peer_host == self.host_id, staging, window=True)

    @_api(False, None, None)
    def alloc_shared(self, nbytes: int):
        """(ok, mr_id, uint8 array): a zero-filled region in a /dev/shm file (mode 0600), registered.
        Advertised to a peer on this host, it lets that peer copy with one memcpy instead of the lanes."""
        if nbytes < 1:
            raise TransferError(f"alloc_shared needs at least 1 byte (got {nbytes})")
        if self._closed:
            raise TransferError("engine is closed")
        try:
            f = SharedFile(int(nbytes), self.engine_id, self._new_id())
        except OSError as e:
            raise TransferError(f"cannot allocate {nbytes} bytes in {SHM_DIR}: {e.strerror}") from None
        return True, self._regions.reg(f.array, shared=f), f.array

    # ---- one-sided transfers -------------------------------------------------------------------------------
    def _plan(self, kind: int, conn_id, mr_id, ptr, size, meta, remote_offset: int = 0):
        """Checks one transfer's arguments before anything is sent: (session, local view, advertisement, offset)."""
        session = self._session(conn_id)
        local = self._regions.region(mr_id).local(_address(ptr), int(size))
        adv = _wire.decode_advertisement(meta)
        if adv.engine_id != session.peer_engine:
            raise TransferError(f"the advertisement was made by engine {adv.engine_id.hex()}, "
                                f"not by the peer of connection {conn_id}")
        remote_offset = int(remote_offset)
        if remote_offset == 0 and size > adv.size:
            raise TransferError(f"size {size} is above the advertised window of {adv.size} bytes")
        if remote_offset < 0 or remote_offset + size > adv.size:
            raise TransferError(f"[{remote_offset}, +{size}) is outside the advertised window of {adv.size} bytes")
        return session, local, adv, remote_offset

    def _launch(self, kind: int, session: Session, local: memoryview, adv: _wire.Advertisement,
                notif: bytes = b"", kv_tag: int = 0, kv_generation: int = 0, remote_offset: int = 0) -> Transfer:
        if len(notif) > _wire.MAX_NOTIF:
            raise TransferError(f"notification of {len(notif)} bytes is above the limit of {_wire.MAX_NOTIF}")
        size = len(local)
        if adv.shm_path is not None and session.peer_host in (None, self.host_id):
            t = self._through_shm(kind, session, local, adv, notif, kv_tag, kv_generation, remote_offset)
            if t is not None:
                return t
        if adv.staging is not None and session.peer_host in (None, self.host_id):
            t = self._through_staging(kind, session, local, adv, notif, kv_tag, kv_generation, remote_offset)
            if t is not None:
                return t
        # GPU memory goes over the lanes too: each lane stages its slices through pinned buffers (_staging.py)
        return self._slices(kind, session, local, adv, notif, kv_tag, kv_generation, remote_offset)

    def _slices(self, kind, session, local, adv, notif, kv_tag, kv_generation, remote_offset) -> Transfer:
        size = len(local)
        step = min(self.slice_bytes, session.peer_max_slice)
        count = -(-size // step)
        name = "write" if kind == _wire.WRITE else "read"
        t = Transfer(self._new_id(), session, count, self.timeout, f"{name} of {size} bytes on {session.describe()}")
        for off in range(0, size, step):
            n = min(step, size - off)
            lane = session.next_lane()
            if kind == _wire.WRITE:
                meta = _wire.encode_write(_wire.WriteSlice(adv.advert_id, adv.token, remote_offset, size, off, kv_tag,
                                                           kv_generation, notif if off == 0 else b""))
                lane.request(WriteSliceOp(t, off), _wire.encode_header(_wire.WRITE, t.transfer_id, len(meta), n) + meta,
                             local[off:off + n])
            else:
                meta = _wire.encode_read(_wire.ReadSlice(adv.advert_id, adv.token, remote_offset + off, n))
                lane.request(ReadSliceOp(t, local[off:off + n]), _wire.encode_header(_wire.READ, t.transfer_id, len(meta)) + meta)
        return t

    def _through_shm(self, kind, session, local, adv, notif, kv_tag, kv_generation, remote_offset) -> Optional[Transfer]:
        """A write: one memcpy into the mapped file, then one zero-length WRITE that the target checks as
        any slice; a read: one memcpy out of it. None when the file does not map (use the lanes)."""
        window = self._mappings.window(adv.shm_path, adv.file_offset + remote_offset, len(local))
        if window is None:
            return None
        name = "write" if kind == _wire.WRITE else "read"
        what = f"shared-memory {name} of {len(local)} bytes on {session.describe()}"
        if isinstance(local, DeviceRange):
            self._dma(kind, adv.shm_path, window, local)
        elif kind == _wire.READ:
            local[:] = window
        else:
            window[:] = local
        if kind == _wire.READ:
            self.shm_transfers += 1
            return Transfer(self._new_id(), session, 0, self.timeout, what)
        self.shm_transfers += 1
        t = Transfer(self._new_id(), session, 1, self.timeout, what)
        meta = _wire.encode_write(_wire.WriteSlice(adv.advert_id, adv.token, remote_offset, len(local), 0, kv_tag,
                                                   kv_generation, notif))
        session.next_lane().request(WriteSliceOp(t, 0), _wire.encode_header(_wire.WRITE, t.transfer_id, len(meta), 0) + meta)
        return t

    def _dma(self, kind: int, path: str, window: memoryview, dev: DeviceRange) -> None:
        """One copy between GPU memory and a same-host peer's mapped window (pinned for DMA once per mapping)."""
        from . import _gpu  # noqa: PLC0415
        gpu = self._cuda()
        mapping = self._mappings.mapped(path)
        if mapping is not None:
            gpu.pin(mapping, _gpu.address_of(memoryview(mapping)), len(mapping))
        host = _gpu.address_of(window)
        if kind == _wire.READ:
            _gpu.copy(dev.device, dev.ptr, host, dev.size)
        else:
            _gpu.copy(dev.device, host, dev.ptr, dev.size)

    def _run(self, kind: int, conn_id, mr_ids, ptrs, sizes, metas, notif=None, offsets=None) -> List[Transfer]:
        offsets = [0] * len(metas) if offsets is None else offsets
        if len(offsets) < len(metas):
            raise TransferError(f"{len(offsets)} remote offsets for {len(metas)} transfers")
        plans = [self._plan(kind, c, m, p, s, b, o)
                 for c, m, p, s, b, o in zip(conn_id, mr_ids, ptrs, sizes, metas, offsets)]
        note = _notif_bytes(notif)
        return [self._launch(kind, s, local, adv, note if i == len(plans) - 1 else b"", remote_offset=off)
                for i, (s, local, adv, off) in enumerate(plans)]

    @staticmethod
    def _finish(transfers: List[Transfer]) -> bool:
        for t in transfers:
            t.wait()
        errors = [t.error for t in transfers if t.failed]
        if errors:
            raise TransferError(errors[0])
        return True

    @_api(False)
    def write(self, conn_id: int, mr_id: int, ptr, size: int, meta: bytes, notif=None, *, remote_offset: int = 0) -> bool:
        """``remote_offset`` (a Kvasir extension): where in the advertised window the bytes land (default: its start)."""
        return self._finish(self._run(_wire.WRITE, [conn_id], [mr_id], [ptr], [size], [meta], notif, [remote_offset]))

    @_api(False)
    def read(self, conn_id: int, mr_id: int, ptr, size: int, meta: bytes, *, remote_offset: int = 0) -> bool:
        """``remote_offset`` (a Kvasir extension): where in the advertised window the bytes are read from."""
        return self._finish(self._run(_wire.READ, [conn_id], [mr_id], [ptr], [size], [meta], offsets=[remote_offset]))

    def _vector(self, kind, conn_id, mr_ids, ptrs, sizes, metas, num_iovs, notif=None, offsets=None):
        lists = (mr_ids, ptrs, sizes, metas) + (() if offsets is None else (offsets,))
        if num_iovs < 1 or any(len(x) < num_iovs for x in lists):
            raise TransferError(f"num_iovs {num_iovs} needs at least that many mr_ids, ptrs, sizes, metas (and offsets)")
        return self._run(kind, [conn_id] * num_iovs, *(x[:num_iovs] for x in lists[:4]), notif=notif,
                         offsets=None if offsets is None else list(offsets[:num_iovs]))

    @_api(False)
    def writev(self, conn_id, mr_id_list, ptr_list, size_list, meta_list, num_iovs, notif=None, *,
               remote_offset_list=None) -> bool:
        """All iovs complete before it returns; the notification (if any) rides on the last one."""
        return self._finish(self._vector(_wire.WRITE, conn_id, mr_id_list, ptr_list, size_list, meta_list, num_iovs, notif,
                                         remote_offset_list))

    @_api(False)
    def readv(self, conn_id, mr_id_list, ptr_list, size_list, meta_list, num_iovs, *, remote_offset_list=None) -> bool:
        return self._finish(self._vector(_wire.READ, conn_id, mr_id_list, ptr_list, size_list, meta_list, num_iovs,
                                         offsets=remote_offset_list))

    def _keep(self, t: Transfer) -> Tuple[bool, int]:
        with self._lock:
            self._async[t.transfer_id] = t
        return True, t.transfer_id

    @_api(False, None)
    def write_async(self, conn_id, mr_id, ptr, size, meta, notif=None) -> Tuple[bool, Optional[int]]:
        return self._keep(self._run(_wire.WRITE, [conn_id], [mr_id], [ptr], [size], [meta], notif)[0])

    @_api(False, None)
    def read_async(self, conn_id, mr_id, ptr, size, meta) -> Tuple[bool, Optional[int]]:
        return self._keep(self._run(_wire.READ, [conn_id], [mr_id], [ptr], [size], [meta])[0])

    @_api(False, False)
    def poll_async(self, transfer_id: int) -> Tuple[bool, bool]:
        """(True, False) while in flight, (True, True) once complete, (False, False) once failed; a
        finished transfer is forgotten after the poll that reported it."""
        with self._lock:
            t = self._async.get(transfer_id)
        if t is None:
            raise TransferError(f"unknown transfer_id {transfer_id}")
        t.expire_if_late()
        if not t.done.is_set():
            return True, False
        with self._lock:
            self._async.pop(transfer_id, None)
        if t.failed:
            raise TransferError(t.error)
        return True, True

    # ---- notifications -------------------------------------------------------------------------------------
    def _request(self, session: Session, opcode: int, meta: bytes) -> None:
        op = SimpleOp(opcode, self._new_id())
        session.next_lane().request(op, _wire.encode_header(opcode, op.request_id, len(meta)) + meta)
        if not op.done.wait(self.timeout):
            raise TransferError(f"{_wire.OPCODE_NAMES[opcode]} got no reply within {self.timeout:g} s")
        if op.error is not None:
            raise TransferError(op.error)

    @_api(False)
    def send_notif(self, conn_id: int, msg) -> bool:
        note = _notif_bytes(msg)
        if len(note) > _wire.MAX_NOTIF:
            raise TransferError(f"notification of {len(note)} bytes is above the limit of {_wire.MAX_NOTIF}")
        self._request(self._session(conn_id), _wire.NOTIFY, note)
        return True

    def get_notifs(self) -> List[Tuple[int, bytes]]:
        with self._lock:
            out, self._notifs = self._notifs, []
        return out

    def wait_notifs(self, timeout: float) -> List[Tuple[int, bytes]]:
        """As get_notifs, but waits up to ``timeout`` seconds for at least one."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._notifs and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            out, self._notifs = self._notifs, []
        return out

    # ---- per-layer pull (docs/transfer.md § Per-layer pull) ---------------------------------------------------
    @_api(False)
    def notify_layer_ready(self, conn_id: int, tag: int, group: int) -> bool:
        """Producer side: tells the peer that layer group ``group`` of request ``tag`` is in the advertised buffer."""
        return self.send_notif(conn_id, layers.encode_note(int(tag), int(group)))

    @_api(False, None)
    def pull_layers(self, conn_id: int, tag: int, groups) -> Tuple[bool, Optional[layers.LayerPull]]:
        """Decoder side: ``groups`` is a list of ``(mr_id, ptr, size, meta[, remote_offset])``, one per layer group,
        each read like ``read``; a group's read starts when the producer's ``notify_layer_ready(tag, group)``
        arrives (or at once if it already did). Returns ``(True, LayerPull)``; wait on it per group."""
        tag = int(tag)
        layers.encode_note(tag, 0)   # checks the tag
        groups = [tuple(g) for g in groups]
        if not groups:
            raise TransferError("a layer pull needs at least one group")
        for i, g in enumerate(groups):   # every group's arguments are checked before anything is read
            if len(g) not in (4, 5):
                raise TransferError(f"layer group {i}: (mr_id, ptr, size, meta[, remote_offset]), not {len(g)} items")
            self._plan(_wire.READ, conn_id, *g)

        def start(g):
            return self._run(_wire.READ, [conn_id], [g[0]], [g[1]], [g[2]], [g[3]], offsets=[g[4] if len(g) > 4 else 0])[0]

        def forget(p):
            with self._lock:
                if self._pulls.get((p.conn_id, p.tag)) is p:
                    del self._pulls[(p.conn_id, p.tag)]
        pull = layers.LayerPull(conn_id, tag, groups, start, self._lock, forget)
        with self._lock:
            if (conn_id, tag) in self._pulls:
                raise TransferError(f"connection {conn_id} already has a layer pull with tag {tag}")
            self._pulls[(conn_id, tag)] = pull
            early = [n for n in self._notifs if n[0] == conn_id and (layers.decode_note(n[1]) or (0,))[0] == tag]
            self._notifs = [n for n in self._notifs if n not in early]
        for _, note in early:
            pull.announce(layers.decode_note(note)[1])
        return True, pull


def _address(ptr) -> int:
    return ptr if isinstance(ptr, int) and not isinstance(ptr, bool) else describe_buffer(ptr)[0]


def _notif_bytes(msg) -> bytes:
    if msg is None:
        return b""
    return msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
