"""GPU memory on a lane (docs/transfer.md § GPU memory): slices move between the socket and a CUDA region through
small pinned host buffers, one slice at a time, so no transfer allocates host memory in proportion to its size.

* Receiving (a WRITE into a GPU region we advertised, a READ reply into a GPU buffer of ours): the reader receives the
  slice into a free buffer of the lane's ring, enqueues its copy to the GPU (cudaMemcpyAsync on the lane's own stream)
  and goes on reading; the lane's completer thread waits for the copies in order and only then acknowledges the slice
  (the WRITE reply, or the read's slice count). While a copy is pending, every later reply of the lane waits behind
  it, so replies still leave in request order.
* Sending (a WRITE from a GPU buffer, a READ reply from a GPU region): the writer copies the slice from the GPU into
  the lane's send buffer, waits for that copy, then sends it.

The device copies go through a :class:`Copier`; :func:`make_copier` gives the CUDA one (the runtime binding of
:mod:`kvasir.cuda`). The same completer runs the copies between a same-host peer's staging file and GPU memory
(_staged.py, :meth:`Staging.copy`); :func:`pin` registers such a file's mapping for DMA. The CPU tests replace
``make_copier`` with a memcpy done later on another thread (and the region's device lookup with a fake), so the ring,
the ordering and the waits are tested without a GPU."""

import collections
import threading
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .regions import DeviceRange, TransferError, raw_view

RING = 3   # receive buffers per lane: one being filled from the socket, the others' copies in flight


class Copier:
    """Copies between pinned host memory and one device's memory, asynchronously, in the order they were started."""

    def host_buffer(self, n: int) -> Tuple[object, int]:
        """(the object that owns it, its address): ``n`` bytes of host memory the device can copy to and from."""
        raise NotImplementedError

    def start(self, dst: int, src: int, n: int) -> object:
        """Starts copying ``n`` bytes (direction from the addresses); returns what :meth:`wait` takes."""
        raise NotImplementedError

    def wait(self, started: object) -> None:
        """Returns once that copy (and every one started before it) finished; raises TransferError if it failed."""
        raise NotImplementedError


class CudaCopier(Copier):
    """cudaMemcpyAsync on a stream of its own (one per lane and device), a torch event after each copy."""

    def __init__(self, device: int):
        from ..cuda import cuda  # noqa: PLC0415 - only with GPU memory
        rt = cuda()
        if rt is None:
            raise TransferError("GPU memory was given but the CUDA runtime is not usable in this process")
        self._rt, self._torch, self._device = rt, rt.torch, device
        self._stream = self._torch.cuda.Stream(device=device)

    def host_buffer(self, n: int):
        buf = self._torch.empty(n, dtype=self._torch.uint8).pin_memory()
        return buf, buf.data_ptr()

    def start(self, dst: int, src: int, n: int):
        with self._torch.cuda.device(self._device):
            err = self._rt.lib.cudaMemcpyAsync(dst, src, n, 4, self._stream.cuda_stream)   # 4: cudaMemcpyDefault
            if err != 0:
                self._rt.lib.cudaGetLastError()
                raise TransferError(f"cudaMemcpyAsync of {n} bytes failed: CUDA error {err}")
            event = self._torch.cuda.Event()
            event.record(self._stream)
        return event

    def wait(self, started) -> None:
        try:
            started.synchronize()
        except RuntimeError as e:
            raise TransferError(f"a copy between the GPU and host memory failed: {e}") from None


def make_copier(device: int) -> Copier:
    return CudaCopier(device)


def pin(base: int, length: int) -> Optional[str]:
    """Registers host memory for DMA (cudaHostRegister): None when done, else the reason it cannot be."""
    from ..cuda import cuda  # noqa: PLC0415 - only with GPU memory
    rt = cuda()
    if rt is None:
        return "the CUDA runtime is not usable in this process"
    err = rt.host_register(base, length)
    return None if err == 0 else f"cudaHostRegister of {length} bytes failed: CUDA error {err}"


def unpin(base: int) -> None:
    """Ends a registration made by :func:`pin`."""
    from ..cuda import cuda  # noqa: PLC0415
    cuda().lib.cudaHostUnregister(base)


class _Buffer:
    """A pinned host buffer, grown (replaced) when a larger slice needs it."""

    def __init__(self):
        self.owner, self.address, self.size = None, 0, 0

    def fit(self, copier: Copier, n: int) -> int:
        if n > self.size:
            self.owner, self.address = copier.host_buffer(n)
            self.size = n
        return self.address


class Staging:
    """One lane's GPU staging: the receive ring, the send buffer and the completer thread (started on first use)."""

    def __init__(self, name: str, on_error: Callable[[str], None]):
        self._name = name
        self._on_error = on_error   # closes the lane: a completion step raised (a bug), so its slice is lost
        self._lock = threading.Condition()
        self._copiers: Dict[int, Copier] = {}
        self._free: List[_Buffer] = [_Buffer() for _ in range(RING)]
        self._send = _Buffer()
        # in order: (copier, what start returned or None, buffer to give back or None, callback(error or None))
        self._queue: Deque[Tuple[Optional[Copier], object, Optional[_Buffer], Callable[[Optional[str]], None]]] = \
            collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._closing = False

    def _copier(self, device: int) -> Copier:
        with self._lock:
            c = self._copiers.get(device)
            if c is None:
                c = self._copiers[device] = make_copier(device)
            return c

    # ---- receiving into GPU memory ----------------------------------------------------------------------------
    def receive(self, recv_into: Callable[[memoryview], None], dest: DeviceRange,
                then: Callable[[Optional[str]], None]) -> None:
        """Reads ``len(dest)`` bytes with ``recv_into`` into a ring buffer and starts their copy to ``dest``;
        ``then(None)`` runs on the completer once the bytes are in GPU memory (``then(reason)`` if the copy failed).
        A socket error propagates (the reader closes the lane); ``then`` is not called then."""
        copier = self._copier(dest.device)
        with self._lock:
            while not self._free and not self._closing:   # every buffer's copy is in flight: the oldest frees one
                self._lock.wait()
            if self._closing:
                raise ConnectionError("the lane closed while a slice waited for a staging buffer")
            buf = self._free.pop()
        try:
            host = buf.fit(copier, dest.size)
            recv_into(raw_view(host, dest.size))
            started = copier.start(dest.ptr, host, dest.size)
        except BaseException:
            self._give(buf)
            raise
        self._enqueue((copier, started, buf, then))

    def copy(self, device: int, dst: int, src: int, n: int, then: Callable[[Optional[str]], None]) -> None:
        """Starts one copy between a registered host range and GPU memory (direction from the addresses); ``then``
        runs on the completer once it finished, in order with the lane's other copies and replies."""
        copier = self._copier(device)
        self._enqueue((copier, copier.start(dst, src, n), None, then))

    def after(self, then: Callable[[Optional[str]], None]) -> bool:
        """Queues ``then`` behind the copies in flight and returns True; returns False (and queues nothing) when none
        is in flight, so the caller acts at once. Keeps the lane's replies in request order."""
        with self._lock:
            if not self._queue:
                return False
            self._queue.append((None, None, None, then))
            return True

    def _enqueue(self, item) -> None:
        with self._lock:
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._complete, name=f"{self._name}-gpu", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def _give(self, buf: _Buffer) -> None:
        with self._lock:
            self._free.append(buf)
            self._lock.notify_all()

    def _complete(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue:
                    return
                copier, started, buf, then = self._queue[0]
            error = None
            if copier is not None:
                try:
                    copier.wait(started)
                except TransferError as e:
                    error = str(e)
            if buf is not None:
                self._give(buf)
            try:
                then(error)
            except Exception as e:  # noqa: BLE001 - never leave the lane's later slices waiting on a dead thread
                self._on_error(f"internal error after a GPU copy: {e!r}")
            finally:
                with self._lock:
                    # popped only now: a reply queued meanwhile by `after` waits behind this one's callback
                    self._queue.popleft()
                    self._lock.notify_all()

    # ---- sending from GPU memory ------------------------------------------------------------------------------
    def stage_send(self, src: DeviceRange) -> memoryview:
        """The slice's bytes copied from GPU memory into the lane's send buffer (valid until the next call; the
        lane's writer is its only caller)."""
        copier = self._copier(src.device)
        host = self._send.fit(copier, src.size)
        copier.wait(copier.start(host, src.ptr, src.size))
        return raw_view(host, src.size)

    def close(self) -> None:
        """The completer finishes what is queued (a copy in flight still writes into its buffer) and stops."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
