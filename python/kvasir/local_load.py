"""Asynchronous loads from a node on this host, straight out of its shared-memory arena.

``KvStore.batch_get_into_multi_buffers_submit_local`` leases every value (one round trip), then
starts the copies and returns a :class:`LocalLoad` at once. Destinations in host memory are filled by
a worker thread (one memcpy per piece). Destinations in GPU memory, when torch with CUDA is present,
are filled by ``cudaMemcpyAsync`` on a dedicated CUDA stream straight from the arena, which is
registered with CUDA once per mapping (``cudaHostRegister``): one DMA per piece, no staging buffer.
The leases are released when the copies have finished (observed by ``is_done`` or ``wait``).
"""

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from .errors import KvasirError


class KeyNotLocalError(KvasirError):
    """A key of an async local load is not in the local node's memory: use batch_get_into_multi_buffers."""


# --- CUDA runtime, through ctypes (only when torch with CUDA is importable) ---------------------------

_CUDA_MEMCPY_DEFAULT = 4
_CUDA_MEMORY_TYPE_DEVICE = 2
_cuda_lock = threading.Lock()
_cuda = None   # (cudart CDLL, torch) or False when unavailable


class _PointerAttributes(ctypes.Structure):
    # cudaPointerAttributes starts with these fields; newer CUDA versions append reserved words, so
    # room is left for them (a struct that is too small is overwritten past its end).
    _fields_ = [("type", ctypes.c_int), ("device", ctypes.c_int),
                ("devicePointer", ctypes.c_void_p), ("hostPointer", ctypes.c_void_p),
                ("reserved", ctypes.c_uint64 * 32)]


def _find_cudart() -> Optional[str]:
    import torch  # noqa: PLC0415
    roots = [os.path.join(os.path.dirname(torch.__file__), "lib")]
    roots += glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia", "*", "lib"))
    for root in roots:
        found = sorted(f for f in glob.glob(os.path.join(root, "libcudart.so*")) if not f.endswith(".a"))
        if found:
            return found[0]
    return "libcudart.so"   # the loader's search path


def cuda():
    """(cudart, torch) when CUDA is usable in this process, else None."""
    global _cuda
    with _cuda_lock:
        if _cuda is None:
            try:
                import torch  # noqa: PLC0415
                if not torch.cuda.is_available():
                    raise OSError("no CUDA device")
                torch.cuda.init()
                lib = ctypes.CDLL(_find_cudart())
                lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
                lib.cudaPointerGetAttributes.argtypes = [ctypes.POINTER(_PointerAttributes), ctypes.c_void_p]
                lib.cudaGetLastError.argtypes = []
                lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _cuda = (lib, torch)
            except (ImportError, OSError, AttributeError, RuntimeError):
                _cuda = False
        return _cuda or None


def is_device_pointer(ptr: int) -> bool:
    c = cuda()
    if c is None:
        return False
    lib, _ = c
    attr = _PointerAttributes()
    if lib.cudaPointerGetAttributes(ctypes.byref(attr), ctypes.c_void_p(ptr)) != 0:
        lib.cudaGetLastError()   # clear the sticky "invalid value" of a plain host pointer
        return False
    return attr.type == _CUDA_MEMORY_TYPE_DEVICE


_registered = {}   # mapping id -> registered base address


def register_mapping(mapping) -> None:
    """cudaHostRegister the arena mapping once (pinned for DMA)."""
    c = cuda()
    if c is None or id(mapping) in _registered:
        return
    _, torch = c
    base = mapping.address()
    err = torch.cuda.cudart().cudaHostRegister(base, mapping.length, 0)
    if int(err) != 0:
        raise KvasirError(f"cudaHostRegister of the arena failed: error {int(err)}")
    _registered[id(mapping)] = base


def copy_into_arena(mapping, offset: int, src: int, n: int, on_device: bool) -> None:
    """One value into reserved arena space: a DMA from GPU memory, or a memcpy from host memory."""
    if offset + n > mapping.length:
        raise KvasirError("the node returned a range outside its arena")
    if not on_device:
        ctypes.memmove(mapping.address() + offset, src, n)
        return
    lib, _ = cuda()
    register_mapping(mapping)
    err = lib.cudaMemcpy(ctypes.c_void_p(mapping.address() + offset), ctypes.c_void_p(src), n, _CUDA_MEMCPY_DEFAULT)
    if err != 0:
        lib.cudaGetLastError()
        raise KvasirError(f"cudaMemcpy from the GPU failed: error {err}")


# --- the handle ---------------------------------------------------------------------------------------

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kvasir-local-load")


class LocalLoad:
    """A load in flight. ``is_done()`` polls; ``wait()`` blocks and returns the lengths per key."""

    def __init__(self, store, lengths: List[int], lease_ids: List[int], copies: list, mapping, gpu: bool):
        self._store = store
        self._lengths = lengths
        self._lease_ids = lease_ids
        self._released = False
        self._lock = threading.Lock()
        if gpu:
            lib, torch = cuda()
            stream = torch.cuda.Stream()
            base = mapping.address()
            for dst, offset, n in copies:
                err = lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(base + offset), n, _CUDA_MEMCPY_DEFAULT,
                                          ctypes.c_void_p(stream.cuda_stream))
                if err != 0:
                    lib.cudaGetLastError()
                    stream.synchronize()
                    self._release()
                    raise KvasirError(f"cudaMemcpyAsync failed: error {err}")
            self._event = torch.cuda.Event()
            self._event.record(stream)
            self._future = None
        else:
            self._event = None

            def run():
                for dst, offset, n in copies:
                    ctypes.memmove(dst, mapping.address() + offset, n)
            self._future = _pool.submit(run)

    def is_done(self) -> bool:
        done = self._event.query() if self._event is not None else self._future.done()
        if done:
            self._finish()
        return done

    def wait(self, timeout: Optional[float] = None) -> List[int]:
        if self._event is not None:
            self._event.synchronize()
        else:
            self._future.result(timeout)
        self._finish()
        return list(self._lengths)

    def _finish(self) -> None:
        if self._future is not None and self._future.exception() is not None:
            self._release()
            raise KvasirError(f"local copy failed: {self._future.exception()}")
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._store._release_leases(self._lease_ids)
