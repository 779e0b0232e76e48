"""Registered memory and the advertisements made of it (docs/transfer.md § Regions and advertisements).

Safety rule: a byte lands in (or is sent from) a region only between :meth:`RegionTable.begin` and
:meth:`Landing.end`; ``begin`` fails once the advertisement is withdrawn, and :meth:`RegionTable.dereg`
withdraws every advertisement first and then waits for the landings in flight, so no byte is written
into a region after ``dereg`` returned (the wait is bounded by the transfer timeout)."""

import collections
import ctypes
import functools
import hmac
import os
import sys
import threading
import time
from typing import Dict, Optional, Tuple

from . import _wire


class TransferError(Exception):
    """A call the engine refuses; the message is the one-line reason put in ``last_error``."""


def api(*fail):
    """Turns a refused call (TransferError, ValueError) into the documented failure tuple + last_error."""
    result = fail[0] if len(fail) == 1 else tuple(fail)

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except (TransferError, ValueError, TypeError) as e:
                self.last_error = f"{fn.__name__}: {e}"
                return result
        return wrapper
    return deco


def _torch_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "data_ptr") and hasattr(obj, "is_cuda")


def describe_buffer(obj, size: Optional[int] = None) -> Tuple[int, int]:
    """(address, bytes) of a numpy array, a CPU torch tensor, an int address with ``size``, or a (ptr, size) pair."""
    if isinstance(obj, tuple) and len(obj) == 2 and size is None:
        obj, size = obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        if size is None:
            raise TransferError("an address needs its size: pass (ptr, size)")
        if obj <= 0 or size < 0:
            raise TransferError(f"bad address range ptr={obj} size={size}")
        return obj, int(size)
    if _torch_tensor(obj):
        if not obj.is_contiguous():
            raise TransferError("torch tensor is not contiguous: call .contiguous() first")
        nbytes = obj.numel() * obj.element_size()
        return obj.data_ptr(), nbytes if size is None else int(size)
    iface = getattr(obj, "__array_interface__", None)
    if iface is not None:
        if not obj.flags["C_CONTIGUOUS"]:
            raise TransferError("numpy array is not C-contiguous: use np.ascontiguousarray first")
        return iface["data"][0], obj.nbytes if size is None else int(size)
    raise TransferError(f"unsupported buffer type {type(obj).__name__}: "
                        "use a numpy array, a CPU torch tensor or a (ptr, size) pair")


class DeviceRange:
    """[ptr, ptr+size) of a CUDA region on ``device``: what Region.local returns for GPU memory."""

    def __init__(self, ptr: int, size: int, device: int):
        self.ptr, self.size, self.device = ptr, size, device

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> "DeviceRange":
        start, stop, _ = part.indices(self.size)
        return DeviceRange(self.ptr + start, max(0, stop - start), self.device)


def tensor_device(obj) -> Optional[int]:
    """The CUDA device index of a torch CUDA tensor, else None."""
    if type(obj).__module__.startswith("torch") and getattr(obj, "is_cuda", False):
        return obj.device.index if obj.device.index is not None else 0
    return None


def address_device(ptr: int) -> Optional[int]:
    """The CUDA device holding a raw address, when this process has CUDA initialised (else it cannot be GPU
    memory it allocated), so a (ptr, size) pair of GPU memory is never read by the CPU."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    from ..cuda import cuda  # noqa: PLC0415
    rt = cuda()
    found = rt.allocation(ptr) if rt is not None else None
    return None if found is None else found[0]


def raw_view(ptr: int, size: int) -> memoryview:
    """A writable byte view of [ptr, ptr+size); the caller keeps the memory alive."""
    if size == 0:
        return memoryview(bytearray(0))
    return memoryview((ctypes.c_ubyte * size).from_address(ptr)).cast("B")


class Region:
    def __init__(self, mr_id: int, ptr: int, size: int, owner, shared=None):
        self.mr_id = mr_id
        self.ptr = ptr
        self.size = size
        self.owner = owner  # keeps the array/tensor alive as long as the registration
        self.shared = shared  # the _shm.SharedFile of an alloc_shared region
        self.device = tensor_device(owner)   # a CUDA region: never read or written by the CPU
        if self.device is None and not hasattr(owner, "__array_interface__") and not _torch_tensor(owner):
            self.device = address_device(ptr)
        self.view = raw_view(ptr, size) if self.device is None else None

    def local(self, ptr: int, size: int):
        """The view of [ptr, ptr+size), which must lie inside the region (a DeviceRange for GPU memory)."""
        if size < 1:
            raise TransferError(f"size must be at least 1 byte (got {size})")
        if ptr < self.ptr or ptr + size > self.ptr + self.size:
            raise TransferError(f"range [0x{ptr:x}, +{size}) is outside region {self.mr_id} "
                                f"[0x{self.ptr:x}, +{self.size})")
        return self.window(ptr - self.ptr, size)

    def window(self, offset: int, size: int):
        """[offset, offset+size) of the region: a byte view, or a DeviceRange for GPU memory."""
        if self.device is not None:
            return DeviceRange(self.ptr + offset, size, self.device)
        return self.view[offset:offset + size]


class Advert:
    def __init__(self, advert_id: int, token: bytes, conn_id: int, region: Region, offset: int, size: int):
        self.advert_id = advert_id
        self.token = token
        self.conn_id = conn_id
        self.region = region
        self.offset = offset
        self.size = size


class Landing:
    """A slice landing in (or sent from) a region: call :meth:`end` when the bytes are in place (for GPU memory,
    ``view`` is a DeviceRange and the bytes are in place once their copy from the lane's staging finished)."""

    def __init__(self, table: "RegionTable", region: Region, view):
        self._table = table
        self.region = region
        self.view = view

    def end(self) -> None:
        self._table._end(self.region)


# Window advertisements kept per connection (docs/transfer.md § Advertisements): a connection that advertises a window
# per request would otherwise grow the table for as long as it lives. The oldest goes first; a transfer naming it is
# refused NOT_ADVERTISED. The .NET engine keeps the same number (Advertisements.MaxPerConnection).
MAX_ADVERTS_PER_CONNECTION = 1 << 16


class RegionTable:
    def __init__(self, engine_id: bytes, max_adverts_per_connection: int = MAX_ADVERTS_PER_CONNECTION):
        self._engine_id = engine_id
        self._lock = threading.Condition()
        self._regions: Dict[int, Region] = {}
        self._adverts: Dict[int, Advert] = {}
        self._windows_of: Dict[int, collections.deque] = {}   # per connection: its window advertisements' ids, oldest first
        self._max_windows = max_adverts_per_connection
        self._active: Dict[int, int] = {}
        self._next_mr = 1
        self._next_advert = 1

    def reg(self, obj, size: Optional[int] = None, shared=None) -> int:
        ptr, nbytes = describe_buffer(obj, size)
        if nbytes < 1:
            raise TransferError("cannot register an empty buffer")
        with self._lock:
            mr_id = self._next_mr
            self._next_mr += 1
            self._regions[mr_id] = Region(mr_id, ptr, nbytes, obj, shared)
            self._active[mr_id] = 0
            return mr_id

    def region(self, mr_id: int) -> Region:
        with self._lock:
            r = self._regions.get(mr_id)
        if r is None:
            raise TransferError(f"unknown mr_id {mr_id}")
        return r

    def dereg(self, mr_id: int, timeout: float) -> None:
        with self._lock:
            if mr_id not in self._regions:
                raise TransferError(f"unknown mr_id {mr_id}")
            for aid in [a.advert_id for a in self._adverts.values() if a.region.mr_id == mr_id]:
                del self._adverts[aid]
            deadline = time.monotonic() + timeout
            while self._active[mr_id]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransferError(f"mr_id {mr_id}: slices still landing after {timeout:g} s; not deregistered")
                self._lock.wait(left)
            region = self._regions.pop(mr_id)
            del self._active[mr_id]
        if region.shared is not None:
            region.shared.unlink()

    def unlink_shared(self) -> None:
        """Removes every shared-memory file (the engine is closing)."""
        with self._lock:
            shared = [r.shared for r in self._regions.values() if r.shared is not None]
        for f in shared:
            f.unlink()

    def advertise(self, conn_id: int, mr_id: int, ptr: int, size: int, same_host: bool = False,
                  staging: Optional[_wire.Staging] = None, window: bool = False) -> bytes:
        """The advertisement blob; with the shared-memory extension when the region is in a shared
        file and the peer is known to be on this host, and with ``staging`` (the connection's staging file, for a
        GPU region) when given. A ``window``'s counts against its connection's MAX_ADVERTS_PER_CONNECTION most recent,
        which stay valid; a kv buffer's lives until the buffer goes."""
        region = self.region(mr_id)
        region.local(ptr, size)  # bounds check
        token = os.urandom(_wire.TOKEN_BYTES)
        with self._lock:
            if mr_id not in self._regions:
                raise TransferError(f"unknown mr_id {mr_id}")
            aid = self._next_advert
            self._next_advert += 1
            self._adverts[aid] = Advert(aid, token, conn_id, region, ptr - region.ptr, size)
            if window:
                order = self._windows_of.setdefault(conn_id, collections.deque())
                order.append(aid)
                while len(order) > self._max_windows:
                    self._adverts.pop(order.popleft(), None)
        shm = region.shared.path if region.shared is not None and same_host else None
        return _wire.encode_advertisement(_wire.Advertisement(self._engine_id, aid, token, size, ptr, shm,
                                                              ptr - region.ptr if shm else 0, staging))

    def advert_count(self) -> int:
        with self._lock:
            return len(self._adverts)

    def advert(self, advert_id: int) -> Optional[Advert]:
        with self._lock:
            return self._adverts.get(advert_id)

    def drop_connection(self, conn_id: int) -> None:
        with self._lock:
            self._windows_of.pop(conn_id, None)
            for aid in [a.advert_id for a in self._adverts.values() if a.conn_id == conn_id]:
                del self._adverts[aid]

    def begin(self, conn_id: int, advert_id: int, token: bytes, window_offset: int, length: int,
              transfer_length: Optional[int] = None, slice_offset: int = 0) -> Landing:
        """Checks a slice against its advertisement (in the spec's order) and pins the region.
        Raises FrameError with NOT_ADVERTISED or OUT_OF_BOUNDS."""
        with self._lock:
            a = self._adverts.get(advert_id)
            if a is None or a.conn_id != conn_id or not _tokens_equal(a.token, token):
                raise _wire.FrameError(_wire.NOT_ADVERTISED, f"advertisement {advert_id} is not valid for this connection "
                                                             f"(withdrawn, or older than its {self._max_windows} latest)")
            span = length if transfer_length is None else transfer_length
            if slice_offset + length > span or window_offset + span > a.size:
                raise _wire.FrameError(_wire.OUT_OF_BOUNDS, f"slice [{window_offset + slice_offset}, +{length}) "
                                                            f"is outside the window of {a.size} bytes")
            start = a.offset + window_offset + slice_offset
            self._active[a.region.mr_id] += 1
            return Landing(self, a.region, a.region.window(start, length))

    def _end(self, region: Region) -> None:
        with self._lock:
            self._active[region.mr_id] -= 1
            if not self._active[region.mr_id]:
                self._lock.notify_all()


def _tokens_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, bytes(b))


def typed_view(owner, view: memoryview, length: int):
    """The first ``length`` bytes of a registered buffer, as its dtype where the length allows, else uint8 (GPU
    memory registered as a (ptr, size) pair: the pair of those bytes)."""
    import numpy as np
    if view is None and not _torch_tensor(owner):
        return describe_buffer(owner)[0], length
    if hasattr(owner, "__array_interface__"):
        flat = owner.reshape(-1)
        if length % flat.itemsize == 0:
            return flat[:length // flat.itemsize]
        return flat.view(np.uint8)[:length]
    if hasattr(owner, "element_size"):
        flat = owner.reshape(-1)
        if length % owner.element_size() == 0:
            return flat[:length // owner.element_size()]
        if view is None:   # GPU memory: the tensor's first bytes, as uint8
            import torch  # noqa: PLC0415 - the owner is a torch tensor
            return flat.view(torch.uint8)[:length]
    return np.frombuffer(view[:length], dtype=np.uint8)
