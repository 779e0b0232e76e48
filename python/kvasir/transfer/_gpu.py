"""CUDA buffers in the transfer engine (docs/transfer.md § GPU memory): to or from a same-host peer's shared-memory
window, one DMA between GPU memory and the mapped file (pinned with cudaHostRegister once per mapping), as the store's
local loads do. Over the lanes, GPU memory moves slice by slice through each lane's pinned buffers (_staging.py)."""

import ctypes
import threading
import weakref
from typing import Dict

import numpy as np

from ..cuda import cuda
from .regions import TransferError


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
    """Per engine: the shared-file mappings pinned for DMA."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pinned: Dict[int, weakref.finalize] = {}   # id(mmap) -> its cudaHostUnregister, run once

    # ---- shared memory: DMA straight between the mapped window and the GPU ---------------------------------
    def pin(self, mapping, base: int, length: int) -> None:
        """Registers a shared-file mapping for DMA once. Unregistered by :meth:`unpin` (when the mapping is
        replaced or the engine closes), or else when the mapping is collected: a registration must never outlive
        its pages, or a later mapping at the same address would be DMA'd into the old ones."""
        key = id(mapping)
        with self._lock:
            if key in self._pinned:
                return
            rt = _runtime()
            if rt.host_register(base, length) != 0:
                return   # still correct: the copy then goes through the driver's own staging
            self._pinned[key] = weakref.finalize(mapping, rt.lib.cudaHostUnregister, base)

    def unpin(self, mapping) -> None:
        with self._lock:
            done = self._pinned.pop(id(mapping), None)
        if done is not None:
            done()
