"""Prefill -> decode hand-off for the vLLM connector through the Kvasir transfer engine (docs/connectors.md,
"Disaggregated prefill").

The decoder *pulls* (as vLLM's NixlConnector does): the producer's worker keeps a finished request's blocks
(vLLM delays their free) under a **lease**; the consumer's worker asks for them, reads every block slice straight
from the producer's kv caches into its own with one-sided reads over the engine's lanes, and then tells the
producer it is done, which ends the lease. A lease nobody claims ends after ``lease_seconds``; a claimed one is
held while the reader reads, but never past ``read_hold_seconds``, which is longer than the reader's own transfer
deadline, so a read that could still complete always sees the producer's bytes and never a reused block's.

Messages are engine notifications (``send_notif``), ASCII-tagged, JSON where they carry data::

    consumer -> producer  KVPD/CLAIM {"req": remote_request_id}
    producer -> consumer  KVPD/GRANT {"req": ..., "layers": [[name, advert hex, block stride, [leads], slab], ...]}
                          KVPD/GONE  {"req": ..., "why": "..."}      (unknown, expired or already freed)
    consumer -> producer  KVPD/DONE  {"req": ...}                     (ends the lease: vLLM may free the blocks)

The producer publishes its endpoint (``Engine.get_metadata()``) in the store under
``kvasir/vllm/v1/pd/{engine_id}/tp{r}of{n}/pp{r}of{n}``, so a consumer needs nothing but the
``remote_engine_id`` that vLLM's kv_transfer_params carry.
"""

import json
import logging
import threading
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ..transfer import Engine

logger = logging.getLogger("kvasir.vllm")

CLAIM, GRANT, GONE, DONE = b"KVPD/CLAIM ", b"KVPD/GRANT ", b"KVPD/GONE ", b"KVPD/DONE "


def endpoint_key(engine_id: str, tp: Tuple[int, int], pp: Tuple[int, int]) -> str:
    return f"kvasir/vllm/v1/pd/{engine_id}/tp{tp[0]}of{tp[1]}/pp{pp[0]}of{pp[1]}"


def _message(tag: bytes, **fields) -> bytes:
    return tag + json.dumps(fields, separators=(",", ":")).encode()


def _parse(note: bytes) -> Tuple[bytes, dict]:
    for tag in (CLAIM, GRANT, GONE, DONE):
        if note.startswith(tag):
            return tag, json.loads(note[len(tag):])
    raise ValueError(f"not a hand-off message: {note[:24]!r}")


class Layer:
    """How one layer's blocks lie in its kv-cache tensor: byte offsets of block ``b``'s pieces are
    ``b * block_stride + lead`` for each lead, each ``slab`` bytes long."""

    def __init__(self, name: str, ptr: int, nbytes: int, block_stride: int, leads: Sequence[int], slab: int):
        self.name, self.ptr, self.nbytes = name, ptr, nbytes
        self.block_stride, self.leads, self.slab = block_stride, list(leads), slab

    def offsets(self, block_id: int) -> List[int]:
        return [block_id * self.block_stride + lead for lead in self.leads]


class _Lease:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.reading = False


class Producer:
    """The prefill side: registers the kv caches, answers claims, ends leases on DONE or timeout."""

    def __init__(self, layers: List[Layer], store, key: str, *, interface: str, port: int, lanes: int,
                 auth_key, lease_seconds: float, read_hold_seconds: float):
        self._layers = layers
        self._lease_seconds = lease_seconds
        self._read_hold = read_hold_seconds
        self.engine = Engine(interface, 1, lanes, port, auth_key=auth_key)
        self._mrs = []
        for layer in layers:
            ok, mr = self.engine.reg((layer.ptr, layer.nbytes))
            if not ok:
                raise ValueError(f"kvasir: cannot register layer {layer.name} for the hand-off: {self.engine.last_error}")
            self._mrs.append(mr)
        self._adverts: Dict[int, List[str]] = {}        # conn_id -> advert blob (hex) per layer
        self._leases: Dict[str, _Lease] = {}
        self._done_early: Dict[str, float] = {}         # DONE before the worker learnt of the lease
        self._finished: Set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.key = key
        self._store = store
        try:
            code = store.put(key, self.engine.get_metadata())
        except Exception as e:  # noqa: BLE001 - the store may be down now; decoders then read it (or recompute)
            code = repr(e)
        if code != 0:
            logger.warning("kvasir: could not publish the hand-off endpoint %s in the store (%s); decoders will read "
                           "this engine's blocks from the store instead of pulling them", key, code)
        self._thread = threading.Thread(target=self._serve, name="kvasir-pd-producer", daemon=True)
        self._thread.start()

    # ---- called by the worker (vLLM's thread) ----------------------------------------------------------------
    def lease(self, req_ids: Sequence[str]) -> None:
        """The scheduler delayed the free of these requests' blocks: hold them until DONE or the lease times out."""
        now = time.monotonic()
        with self._lock:
            for req in req_ids:
                if self._done_early.pop(req, None) is not None:
                    self._finished.add(req)
                else:
                    self._leases[req] = _Lease(now + self._lease_seconds)

    def finished(self) -> Set[str]:
        """Requests whose blocks vLLM may free now (DONE received, or the lease expired)."""
        now = time.monotonic()
        with self._lock:
            for req, lease in list(self._leases.items()):
                if lease.deadline <= now:
                    if lease.reading:
                        logger.warning("kvasir: the decoder reading %s did not finish within %g s; freeing its blocks",
                                       req, self._read_hold)
                    else:
                        logger.info("kvasir: nobody claimed %s within %g s; freeing its blocks", req, self._lease_seconds)
                    del self._leases[req]
                    self._finished.add(req)
            for req, t in list(self._done_early.items()):
                if t <= now:   # a DONE for a lease never announced: forget it
                    del self._done_early[req]
            out, self._finished = self._finished, set()
        return out

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5.0)
        try:
            self._store.remove(self.key)
        except Exception:  # noqa: BLE001 - best effort: a stale endpoint only costs a refused connect
            pass
        self.engine.close()

    # ---- the serving thread ----------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._closed.is_set():
            for conn, note in self.engine.wait_notifs(0.2):
                try:
                    tag, body = _parse(note)
                    if tag == CLAIM:
                        self._claim(conn, str(body["req"]))
                    elif tag == DONE:
                        self._done(str(body["req"]))
                except (ValueError, KeyError, TypeError) as e:
                    logger.warning("kvasir: hand-off message refused from connection %d: %s", conn, e)
            while self.engine.accept(timeout=0)[0]:
                pass   # sessions are used through their notifications; the accept queue must not grow

    def _claim(self, conn: int, req: str) -> None:
        with self._lock:
            lease = self._leases.get(req)
            if lease is not None and not lease.reading:
                lease.reading = True
                lease.deadline = time.monotonic() + self._read_hold
        if lease is None:
            self.engine.send_notif(conn, _message(GONE, req=req, why="no lease (unknown, expired or freed)"))
            return
        adverts = self._adverts.get(conn)
        if adverts is None:
            adverts = []
            for layer, mr in zip(self._layers, self._mrs):
                ok, blob = self.engine.advertise(conn, mr, layer.ptr, layer.nbytes)
                if not ok:
                    self.engine.send_notif(conn, _message(GONE, req=req, why=self.engine.last_error))
                    return
                adverts.append(blob.hex())
            self._adverts[conn] = adverts
        layers = [[lay.name, adv, lay.block_stride, lay.leads, lay.slab] for lay, adv in zip(self._layers, adverts)]
        if not self.engine.send_notif(conn, _message(GRANT, req=req, layers=layers)):
            logger.warning("kvasir: cannot grant %s: %s", req, self.engine.last_error)

    def _done(self, req: str) -> None:
        with self._lock:
            if self._leases.pop(req, None) is not None:
                self._finished.add(req)
            else:
                self._done_early[req] = time.monotonic() + self._lease_seconds


class Consumer:
    """The decode side: claims a producer's blocks and reads them straight into its own kv caches."""

    def __init__(self, layers: List[Layer], store, key_of, *, interface: str, lanes: int, auth_key, timeout: float):
        self._layers = {layer.name: layer for layer in layers}
        self._order = [layer.name for layer in layers]
        self._store = store
        self._key_of = key_of          # remote engine id -> endpoint key
        self._timeout = timeout
        self.engine = Engine(interface, 1, lanes, 0, auth_key=auth_key, timeout=timeout)
        self._mrs = {}
        for layer in layers:
            ok, mr = self.engine.reg((layer.ptr, layer.nbytes))
            if not ok:
                raise ValueError(f"kvasir: cannot register layer {layer.name} for the hand-off: {self.engine.last_error}")
            self._mrs[layer.name] = mr
        self._conns: Dict[str, int] = {}
        self._pending: List[Tuple[int, bytes]] = []

    def close(self) -> None:
        self.engine.close()

    def _connect(self, engine_id: str) -> int:
        conn = self._conns.get(engine_id)
        if conn is not None and self.engine.connection_error(conn) is None:
            return conn
        self._conns.pop(engine_id, None)
        meta = self._store.get(self._key_of(engine_id))
        if not isinstance(meta, (bytes, bytearray, memoryview)):
            raise ConnectionError(f"producer {engine_id} has no endpoint in the store")
        ok, conn = self.engine.add_remote_endpoint(bytes(meta))
        if not ok:
            raise ConnectionError(self.engine.last_error)
        self._conns[engine_id] = conn
        return conn

    def _answer(self, conn: int, req: str) -> Tuple[bytes, dict]:
        deadline = time.monotonic() + self._timeout
        while True:
            for i, (c, note) in enumerate(self._pending):
                if c == conn:
                    try:
                        tag, body = _parse(note)
                    except ValueError:
                        continue
                    if body.get("req") == req and tag in (GRANT, GONE):
                        del self._pending[i]
                        return tag, body
            left = deadline - time.monotonic()
            if left <= 0 or self.engine.connection_error(conn) is not None:
                raise TimeoutError(f"no answer to the claim of {req} within {self._timeout:g} s "
                                   f"({self.engine.connection_error(conn) or 'producer silent'})")
            self._pending.extend(self.engine.wait_notifs(min(left, 0.5)))
            del self._pending[:-256]    # answers for other connections' abandoned claims do not pile up

    def pull(self, engine_id: str, req: str, pairs: Sequence[Tuple[int, int]]) -> bool:
        """Reads the producer's blocks ``remote -> local`` for every (local, remote) pair. True once all landed
        and the producer was told; False (with the reason logged) when the caller must use another source."""
        try:
            conn = self._connect(engine_id)
            if not self.engine.send_notif(conn, _message(CLAIM, req=req)):
                raise ConnectionError(self.engine.last_error)
            tag, body = self._answer(conn, req)
            if tag == GONE:
                logger.info("kvasir: producer %s no longer holds %s (%s); loading from the store", engine_id, req,
                            body.get("why"))
                return False
            ok = self._read(conn, body["layers"], pairs)
            self.engine.send_notif(conn, _message(DONE, req=req))   # best effort: the lease times out otherwise
            return ok
        except (ConnectionError, TimeoutError, OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("kvasir: pulling %s from producer %s failed (%s); loading from the store", req, engine_id, e)
            return False

    def _read(self, conn: int, remote_layers, pairs) -> bool:
        if [r[0] for r in remote_layers] != self._order:
            raise ValueError("the producer's layers differ from this engine's "
                             f"({len(remote_layers)} vs {len(self._order)} layers)")
        mrs, ptrs, sizes, blobs, offsets = [], [], [], [], []
        for name, advert, stride, leads, slab in remote_layers:
            local = self._layers[name]
            if slab != local.slab or len(leads) != len(local.leads):
                raise ValueError(f"layer {name}: the producer's block is {len(leads)} x {slab} bytes, "
                                 f"this engine's {len(local.leads)} x {local.slab}")
            remote = Layer(name, 0, 0, stride, leads, slab)
            blob = bytes.fromhex(advert)
            for local_id, remote_id in pairs:
                for lo, ro in zip(local.offsets(local_id), remote.offsets(remote_id)):
                    mrs.append(self._mrs[name])
                    ptrs.append(local.ptr + lo)
                    sizes.append(slab)
                    blobs.append(blob)
                    offsets.append(ro)
        if not self.engine.readv(conn, mrs, ptrs, sizes, blobs, len(mrs), remote_offset_list=offsets):
            raise ConnectionError(self.engine.last_error)
        return True
