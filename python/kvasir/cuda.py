"""The CUDA runtime of torch's installation, through ctypes: DMA between the node's shared-memory
arena and GPU memory for :mod:`kvasir.local_load`. Nothing here imports torch until :func:`cuda` is
first called, and everything answers None/False when torch or a CUDA device is missing."""

import ctypes
import glob
import logging
import os
import threading
from typing import Optional

from .errors import KvasirError

log = logging.getLogger("kvasir")

_MEMCPY_DEFAULT = 4                  # cudaMemcpyDefault: direction from the (unified) addresses
_MEMORY_DEVICE, _MEMORY_MANAGED = 2, 3
_HOST_REGISTER_PORTABLE = 1          # pinned for every CUDA context in the process
_SRC_ACCESS_ORDER_STREAM = 1
_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712


class _PointerAttributes(ctypes.Structure):
    # cudaPointerAttributes starts with these fields; newer CUDA versions append reserved words, so
    # room is left for them (a struct that is too small is overwritten past its end).
    _fields_ = [("type", ctypes.c_int), ("device", ctypes.c_int),
                ("devicePointer", ctypes.c_void_p), ("hostPointer", ctypes.c_void_p),
                ("reserved", ctypes.c_uint64 * 32)]


class _MemLocation(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class _MemcpyAttributes(ctypes.Structure):
    _fields_ = [("srcAccessOrder", ctypes.c_int), ("srcLocHint", _MemLocation),
                ("dstLocHint", _MemLocation), ("flags", ctypes.c_uint)]


def _find_cudart(torch) -> str:
    roots = [os.path.join(os.path.dirname(torch.__file__), "lib")]
    roots += glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia", "*", "lib"))
    for root in roots:
        found = sorted(f for f in glob.glob(os.path.join(root, "libcudart.so*")) if not f.endswith(".a"))
        if found:
            return found[0]
    return "libcudart.so"   # the loader's search path


class Cuda:
    """The CUDA runtime of torch's installation (and the driver, for allocation ranges)."""

    def __init__(self, torch):
        self.torch = torch
        lib = ctypes.CDLL(_find_cudart(torch))
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.cudaMemcpyAsync.argtypes = [vp, vp, sz, ctypes.c_int, vp]
        lib.cudaPointerGetAttributes.argtypes = [ctypes.POINTER(_PointerAttributes), vp]
        lib.cudaGetLastError.argtypes = []
        lib.cudaHostRegister.argtypes = [vp, sz, ctypes.c_uint]
        lib.cudaHostUnregister.argtypes = [vp]
        version = ctypes.c_int(0)
        lib.cudaRuntimeGetVersion(ctypes.byref(version))
        self.lib, self.version = lib, version.value
        self._batch = getattr(lib, "cudaMemcpyBatchAsync", None) if self.version >= 12080 else None
        if self._batch is not None:
            # CUDA 12.8/12.9 take a failIdx pointer before the stream; 13 dropped it.
            head = [vp, vp, vp, sz, ctypes.POINTER(_MemcpyAttributes), ctypes.POINTER(sz), sz]
            self._batch.argtypes = head + ([vp] if self.version >= 13000 else [ctypes.POINTER(sz), vp])
        try:
            drv = ctypes.CDLL("libcuda.so.1")
            drv.cuMemGetAddressRange_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(sz), ctypes.c_uint64]
            self._driver = drv
        except (OSError, AttributeError):
            self._driver = None
        self._streams = {}
        self._lock = threading.Lock()

    @property
    def batched(self) -> bool:
        """True when a chunk's copies go to the GPU in one cudaMemcpyBatchAsync call."""
        return self._batch is not None

    def allocation(self, ptr: int):
        """(device, base, size) of the GPU allocation holding ``ptr``, size None when the driver
        cannot tell; None when ``ptr`` is not GPU memory."""
        attr = _PointerAttributes()
        if self.lib.cudaPointerGetAttributes(ctypes.byref(attr), ptr) != 0:
            self.lib.cudaGetLastError()   # clear the sticky "invalid value" of a plain host pointer
            return None
        if attr.type not in (_MEMORY_DEVICE, _MEMORY_MANAGED):
            return None
        base, size = ctypes.c_uint64(0), ctypes.c_size_t(0)
        if self._driver is not None and self._driver.cuMemGetAddressRange_v2(ctypes.byref(base), ctypes.byref(size), ptr) == 0:
            return attr.device, base.value, size.value
        return attr.device, ptr, None

    def stream(self, device: int):
        with self._lock:
            s = self._streams.get(device)
            if s is None:
                s = self._streams[device] = self.torch.cuda.Stream(device=device)
            return s

    def host_register(self, base: int, length: int) -> int:
        """Pins [base, base+length) of host memory for DMA in every CUDA context of the process: 0, or the CUDA error
        (already cleared, so it does not stick to the next call)."""
        err = self.lib.cudaHostRegister(base, length, _HOST_REGISTER_PORTABLE)
        if err != 0:
            self.lib.cudaGetLastError()
        return err

    def register(self, mapping) -> None:
        """Pins the arena mapping for DMA, once; undone when the mapping closes."""
        with self._lock:
            if getattr(mapping, "cuda_registered", False):
                return
            base = mapping.address()
            err = self.host_register(base, mapping.length)
            if err not in (0, _ERROR_HOST_MEMORY_ALREADY_REGISTERED):
                raise KvasirError(f"cudaHostRegister of the arena failed: CUDA error {err}")
            mapping.cuda_registered = True
            mapping.close_hooks.append(lambda: self.lib.cudaHostUnregister(base))

    def copy(self, device: int, dst, src, size):
        """Enqueues the copies (numpy uint64 arrays of addresses and sizes) on ``device``'s stream;
        returns a torch CUDA event recorded after them."""
        torch = self.torch
        stream = self.stream(device)
        handle = stream.cuda_stream
        with torch.cuda.device(device):
            if self._batch is not None and len(size) > 1:
                err = self._copy_batch(dst, src, size, handle)
                if err == 0:
                    return self._record(stream)
                self.lib.cudaGetLastError()
                log.info("kvasir: cudaMemcpyBatchAsync failed (CUDA error %d); copying one by one from now on", err)
                self._batch = None
            for d, s, n in zip(dst.tolist(), src.tolist(), size.tolist()):
                err = self.lib.cudaMemcpyAsync(d, s, n, _MEMCPY_DEFAULT, handle)
                if err != 0:
                    self.lib.cudaGetLastError()
                    stream.synchronize()
                    raise KvasirError(f"cudaMemcpyAsync failed: CUDA error {err}")
            return self._record(stream)

    def _copy_batch(self, dst, src, size, handle) -> int:
        attrs = _MemcpyAttributes(srcAccessOrder=_SRC_ACCESS_ORDER_STREAM)
        first = ctypes.c_size_t(0)
        args = [dst.ctypes.data, src.ctypes.data, size.ctypes.data, len(size), ctypes.byref(attrs), ctypes.byref(first), 1]
        if self.version < 13000:
            args.append(ctypes.byref(ctypes.c_size_t(0)))   # failIdx
        return self._batch(*args, handle)

    def _record(self, stream):
        event = self.torch.cuda.Event()
        event.record(stream)
        return event


_cuda_lock = threading.Lock()
_cuda = None   # a Cuda, or False when unavailable


def cuda() -> Optional[Cuda]:
    """The CUDA runtime when torch with a usable CUDA device is importable, else None."""
    global _cuda
    with _cuda_lock:
        if _cuda is None:
            try:
                import torch  # noqa: PLC0415
                if not torch.cuda.is_available():
                    raise OSError("no CUDA device")
                torch.cuda.init()
                _cuda = Cuda(torch)
            except (ImportError, OSError, AttributeError, RuntimeError):
                _cuda = False
        return _cuda or None
