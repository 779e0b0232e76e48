"""CUDA buffers in the transfer engine (docs/transfer.md § GPU memory), on the initiator's side.

A registered CUDA tensor is a region whose bytes the engine never touches from the CPU:
* to or from a same-host peer's shared-memory window, one DMA between GPU memory and the mapped file (pinned
  with cudaHostRegister once per mapping), as the store's local loads do;
* over the lanes, through a pinned host staging buffer (one extra copy each way): a write copies the GPU bytes
  into it before the slices go out, a read copies them to the GPU once every slice has landed. Staging buffers
  are reused from a pool, so steady traffic allocates nothing.
A CUDA region cannot be advertised (a target's slices land from the lanes' threads straight into host memory).
"""

import ctypes
import threading
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..cuda import cuda
from .regions import DeviceRange, TransferError

POOL_BYTES = 1 << 30    # staging kept for reuse (per engine); beyond it buffers are freed after use


def _runtime():
    rt = cuda()
    if rt is None:
        raise TransferError("a CUDA tensor was given but the CUDA runtime is not usable in this process")
    return rt


def copy(device: int, dst: int, src: int, size: int) -> None:
    """One synchronous copy between host and GPU addresses (cudaMemcpyDefault: direction from the addresses)."""
    rt = _runtime()
    rt.copy(device, np.array([dst], dtype=np.uint64), np.array([src], dtype=np.uint64),
            np.array([size], dtype=np.uint64)).synchronize()


def address_of(view: memoryview) -> int:
    """The host address of a writable buffer view."""
    probe = ctypes.c_char.from_buffer(view)
    try:
        return ctypes.addressof(probe)
    finally:
        del probe


class Gpu:
    """Per engine: the staging pool and the pinned mappings."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free: Dict[int, List[object]] = {}
        self._pooled = 0
        self._pinned: Dict[int, int] = {}    # id(mmap) -> base address registered with cudaHostRegister

    # ---- shared memory: DMA straight between the mapped window and the GPU ---------------------------------
    def pin(self, mapping, base: int, length: int) -> None:
        """Registers a shared-file mapping for DMA once (unregistered by unpin when the mapping is replaced)."""
        key = id(mapping)
        with self._lock:
            if key in self._pinned:
                return
            rt = _runtime()
            err = rt.lib.cudaHostRegister(base, length, 1)   # cudaHostRegisterPortable
            if err not in (0, 712):                          # 712: already registered
                rt.lib.cudaGetLastError()
                return   # still correct: the copy then goes through the driver's own staging
            self._pinned[key] = base

    def unpin(self, mapping) -> None:
        with self._lock:
            base = self._pinned.pop(id(mapping), None)
        if base is not None:
            _runtime().lib.cudaHostUnregister(base)

    # ---- the lanes: a pinned staging buffer ---------------------------------------------------------------
    def _take(self, n: int):
        with self._lock:
            free = self._free.get(n)
            if free:
                self._pooled -= n
                return free.pop()
        import torch  # noqa: PLC0415 - only reached with a CUDA tensor, so torch is there
        return torch.empty(n, dtype=torch.uint8).pin_memory()

    def _give(self, buf, n: int) -> None:
        with self._lock:
            if self._pooled + n <= POOL_BYTES:
                self._free.setdefault(n, []).append(buf)
                self._pooled += n

    def stage(self, writing: bool, dev: DeviceRange) -> Tuple[memoryview, Callable[[bool], None]]:
        """A host view to send from (its bytes already copied from the GPU) or to receive into, and the call
        that finishes the transfer once it completed or failed (for a read: the copy to the GPU)."""
        buf = self._take(dev.size)
        host = buf.data_ptr()
        if writing:
            copy(dev.device, host, dev.ptr, dev.size)

        def finish(ok: bool) -> None:
            try:
                if ok and not writing:
                    copy(dev.device, dev.ptr, host, dev.size)
            finally:
                self._give(buf, dev.size)
        return memoryview(buf.numpy()).cast("B"), finish

    def close(self) -> None:
        with self._lock:
            self._free.clear()
            self._pooled = 0
