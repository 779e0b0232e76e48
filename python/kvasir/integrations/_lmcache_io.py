"""LMCache integration, part 1: LMCache's classes (or stand-ins mirroring them) and the chunk format
(fixed header + raw tensor bytes) with the KvStore I/O that writes and reads it. See lmcache.py."""

import asyncio
import ctypes
import enum
import logging
import struct
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .. import errors as E
from ..store import KvStore

logger = logging.getLogger(__name__)

try:  # pragma: no cover - LMCache is not installed in the test environment
    from lmcache.v1.memory_management import MemoryFormat  # type: ignore
except Exception:  # noqa: BLE001
    class MemoryFormat(enum.Enum):
        """Stand-in for ``lmcache.v1.memory_management.MemoryFormat`` (same member values)."""
        UNDEFINED = 0
        KV_2LTD = 1
        KV_T2D = 2
        KV_2TD = 3
        BINARY = 4
        BINARY_BUFFER = 5
        KV_MLA_FMT = 6

try:  # pragma: no cover
    from lmcache.v1.storage_backend.abstract_backend import StoragePluginInterface as _BackendBase  # type: ignore
    _HAVE_LMCACHE_BACKEND = True
except Exception:  # noqa: BLE001
    try:  # pragma: no cover
        from lmcache.v1.storage_backend.abstract_backend import StorageBackendInterface as _BackendBase  # type: ignore
        _HAVE_LMCACHE_BACKEND = True
    except Exception:  # noqa: BLE001
        _HAVE_LMCACHE_BACKEND = False

        class _BackendBase:
            """Stand-in for ``StoragePluginInterface`` (LMCache/LMCache
            lmcache/v1/storage_backend/abstract_backend.py, the stored version that has
            ``touch_cache`` and ``cancel_request``; the code index that served it gives no commit,
            the nearest named one is 2bbf1594): stores the injected ``config``, ``metadata``,
            ``local_cpu_backend``, ``loop`` and ``dst_device``; the optional methods below raise or
            no-op as upstream's do, so a backend that lacks one fails here as it would there."""

            def __init__(self, dst_device: str = "cuda", config=None, metadata=None,
                         local_cpu_backend=None, loop=None):
                torch.device(dst_device)  # raises RuntimeError on a bad device, like LMCache
                self.dst_device = dst_device
                self.config = config
                self.metadata = metadata
                self.local_cpu_backend = local_cpu_backend
                self.loop = loop

            def get_non_blocking(self, key, location: Optional[str] = None):
                raise NotImplementedError

            async def batched_async_contains(self, lookup_id: str, keys, pin: bool = False) -> int:
                raise NotImplementedError

            async def batched_get_non_blocking(self, lookup_id: str, keys, transfer_spec: Any = None) -> list:
                raise NotImplementedError

            def touch_cache(self) -> None:
                raise NotImplementedError

            def cancel_request(self, req_id: str) -> None:
                return

try:  # pragma: no cover
    from lmcache.v1.storage_backend.connector.base_connector import RemoteConnector as _ConnectorBase  # type: ignore
except Exception:  # noqa: BLE001
    class _ConnectorBase:
        """Stand-in for ``lmcache.v1.storage_backend.connector.base_connector.RemoteConnector`` (the
        ``support_*`` switches; remote_backend.py of the same tree asks them before each batched call)."""

        def post_init(self):
            pass

        def support_ping(self) -> bool:
            return False

        def support_batched_get(self) -> bool:
            return False

        def support_batched_put(self) -> bool:
            return False

        def support_batched_contains(self) -> bool:
            return False

        def support_batched_async_contains(self) -> bool:
            return False

        def support_batched_get_non_blocking(self) -> bool:
            return False

try:  # pragma: no cover
    from lmcache.v1.storage_backend.connector import ConnectorAdapter as _AdapterBase  # type: ignore
except Exception:  # noqa: BLE001
    class _AdapterBase:
        """Stand-in for ``lmcache.v1.storage_backend.connector.ConnectorAdapter``."""

        def __init__(self, schema: str = "") -> None:
            self.schema = schema

# ---------------------------------------------------------------- header codec

MAGIC = b"KVSR"
VERSION = 1
MAX_DIMS = 8
_HEAD = struct.Struct("<4sHHBBBxQ8q")  # 84 bytes, then CRC-32 (I) and 8 reserved bytes
_CRC = struct.Struct("<I")
HEADER_SIZE = 96
assert _HEAD.size == 84 and _HEAD.size + _CRC.size + 8 == HEADER_SIZE

_DTYPES: Dict[int, torch.dtype] = {
    1: torch.float16, 2: torch.bfloat16, 3: torch.float32, 4: torch.float64, 5: torch.int8,
    6: torch.uint8, 7: torch.int16, 8: torch.int32, 9: torch.int64, 10: torch.bool,
}
for _code, _name in ((11, "float8_e4m3fn"), (12, "float8_e5m2")):
    if hasattr(torch, _name):
        _DTYPES[_code] = getattr(torch, _name)
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}


def _fmt_value(fmt) -> int:
    if fmt is None:
        return 0
    v = getattr(fmt, "value", fmt)
    return int(v)


def encode_header(shape, dtype: torch.dtype, fmt, payload_len: int) -> bytes:
    """The 96-byte header of a value holding a tensor of ``shape``/``dtype`` in format ``fmt``."""
    dims = [int(d) for d in shape]
    if len(dims) > MAX_DIMS:
        raise ValueError(f"at most {MAX_DIMS} dimensions, got {len(dims)}")
    if dtype not in _DTYPE_CODES:
        raise ValueError(f"unsupported dtype {dtype}")
    head = _HEAD.pack(MAGIC, VERSION, HEADER_SIZE, _DTYPE_CODES[dtype], _fmt_value(fmt), len(dims),
                      payload_len, *(dims + [0] * (MAX_DIMS - len(dims))))
    return head + _CRC.pack(zlib.crc32(head)) + bytes(8)


def decode_header(buf, fmt_cls=None) -> Optional[Tuple[torch.Size, torch.dtype, Any, int]]:
    """(shape, dtype, fmt, payload_len) from a header, or None when it is not a valid header."""
    if len(buf) < HEADER_SIZE:
        return None
    head = bytes(buf[:_HEAD.size])
    try:
        magic, version, hsize, dcode, fcode, ndim, plen, *dims = _HEAD.unpack(head)
        (crc,) = _CRC.unpack_from(bytes(buf[_HEAD.size:_HEAD.size + _CRC.size]))
    except struct.error:
        return None
    if magic != MAGIC or version != VERSION or hsize != HEADER_SIZE or crc != zlib.crc32(head):
        return None
    if dcode not in _DTYPES or ndim > MAX_DIMS or any(d < 0 for d in dims[:ndim]):
        return None
    dtype = _DTYPES[dcode]
    shape = torch.Size(dims[:ndim])
    numel = 1
    for d in shape:
        numel *= d
    if numel * _itemsize(dtype) != plen:
        return None
    cls = fmt_cls or MemoryFormat
    try:
        fmt = cls(fcode)
    except (ValueError, TypeError):
        return None
    return shape, dtype, fmt, plen


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------- MemoryObj helpers

def _key_str(key) -> str:
    to_string = getattr(key, "to_string", None)
    return to_string() if callable(to_string) else str(key)


def _obj_meta(obj):
    """(shape, dtype, fmt) of a MemoryObj: get_shape()/get_dtype()/get_memory_format() where
    present (single-tensor objects only), else ``obj.meta`` / ``obj.metadata``."""
    meta = getattr(obj, "meta", None) or getattr(obj, "metadata", None)
    shape = dtype = fmt = None
    if meta is not None:
        shape, dtype, fmt = getattr(meta, "shape", None), getattr(meta, "dtype", None), getattr(meta, "fmt", None)
    if shape is None and hasattr(obj, "get_shape"):
        shape = obj.get_shape()
    if dtype is None and hasattr(obj, "get_dtype"):
        dtype = obj.get_dtype()
    if fmt is None and hasattr(obj, "get_memory_format"):
        fmt = obj.get_memory_format()
    if shape is None or dtype is None:
        raise ValueError("memory object without shape/dtype")
    return torch.Size(shape), dtype, fmt


def _obj_tensor(obj) -> torch.Tensor:
    t = obj.tensor
    if t is None or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError("memory object tensor must be a contiguous CPU tensor")
    return t


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _ref_down(obj) -> None:
    fn = getattr(obj, "ref_count_down", None)
    if callable(fn):
        fn()


def _ref_up(obj) -> None:
    fn = getattr(obj, "ref_count_up", None)
    if callable(fn):
        fn()


# ---------------------------------------------------------------- shared I/O core

class _KvasirCodecIO:
    """Header + tensor I/O over one KvStore, shared by the backend and the connector.

    Registration: each call registers the exact address ranges it uses (tensor memory and the
    ctypes header buffers) and unregisters them afterwards, under ``self._io_lock`` so concurrent
    calls never drop each other's regions (the KvStore serves one request at a time anyway).
    """

    def __init__(self, store: KvStore, allocate: Callable, fmt_cls=None):
        self.store = store
        self._allocate = allocate
        self._fmt_cls = fmt_cls
        self._io_lock = threading.RLock()
        self._known: Dict[str, Tuple[torch.Size, torch.dtype, Any]] = {}  # key -> last seen layout
        self._known_lock = threading.Lock()

    # registration helpers
    def _with_regions(self, ranges, fn):
        with self._io_lock:
            added = []
            try:
                for ptr, size in ranges:
                    if size > 0 and ptr not in added:
                        self.store.register_buffer(ptr, size)
                        added.append(ptr)
                return fn()
            finally:
                for ptr in added:
                    self.store.unregister_buffer(ptr)

    def remember(self, key: str, layout) -> None:
        with self._known_lock:
            self._known[key] = layout

    def forget(self, key: str) -> None:
        with self._known_lock:
            self._known.pop(key, None)

    def layout(self, key: str):
        with self._known_lock:
            return self._known.get(key)

    # PUT
    def put(self, keys: Sequence[str], objs: Sequence[Any], chain: bool = False) -> List[int]:
        """Writes header + tensor bytes per key; returns per-key codes (0 or negative). ``chain``: ``keys`` are one
        request's chunks in token order (LMCache hands a store's new chunks so); they are declared a chain (issue 17)
        unless a chunk in between is not sent."""
        n = len(keys)
        results = [E.PROTOCOL_ERROR] * n
        heads = ctypes.create_string_buffer(HEADER_SIZE * max(n, 1))
        base = ctypes.addressof(heads)
        send_keys, addrs, sizes, idx, ranges = [], [], [], [], [(base, HEADER_SIZE * max(n, 1))]
        layouts = {}
        for i, (k, obj) in enumerate(zip(keys, objs)):
            try:
                shape, dtype, fmt = _obj_meta(obj)
                t = _obj_tensor(obj)
                nbytes = _nbytes(t)
                if t.numel() != shape.numel() or t.dtype != dtype:
                    raise ValueError("tensor does not match its metadata")
                ctypes.memmove(base + i * HEADER_SIZE, encode_header(shape, dtype, fmt, nbytes), HEADER_SIZE)
            except (ValueError, AttributeError) as ex:
                logger.warning("kvasir: not storing %s: %s", k, ex)
                results[i] = E.INVALID_KEY if isinstance(ex, AttributeError) else E.PROTOCOL_ERROR
                continue
            ptr = t.data_ptr()
            send_keys.append(k)
            addrs.append([base + i * HEADER_SIZE, ptr] if nbytes else [base + i * HEADER_SIZE])
            sizes.append([HEADER_SIZE, nbytes] if nbytes else [HEADER_SIZE])
            ranges.append((ptr, nbytes))
            idx.append(i)
            layouts[k] = (shape, dtype, fmt)
        if send_keys:
            links = {"chain": True} if chain and idx[-1] - idx[0] == len(idx) - 1 else {}
            codes = self._with_regions(ranges, lambda: self.store.batch_put_from_multi_buffers(send_keys, addrs, sizes, **links))
            for i, k, c in zip(idx, send_keys, codes):
                results[i] = c
                if c == E.OK:
                    self.remember(k, layouts[k])
        return results

    # GET
    def _alloc(self, shape, dtype, fmt):
        try:
            return self._allocate(shape, dtype, fmt)
        except Exception as ex:  # noqa: BLE001 - an allocator failure is a miss
            logger.warning("kvasir: allocation of %s %s failed: %s", tuple(shape), dtype, ex)
            return None

    def get(self, keys: Sequence[str]) -> List[Optional[Any]]:
        """MemoryObj per key (allocated from the allocator), or None for a miss / bad value."""
        n = len(keys)
        out: List[Optional[Any]] = [None] * n
        fast, slow = [], []
        for i, k in enumerate(keys):
            (fast if self.layout(k) is not None else slow).append(i)
        if fast:
            slow.extend(self._get_known(keys, fast, out))
        for i in sorted(slow):
            out[i] = self._get_unknown(keys[i])
        return out

    def _get_known(self, keys, positions, out) -> List[int]:
        """Zero-copy gets for keys whose layout is known; returns positions to retry slowly."""
        retry = []
        objs, pos_ok = [], []
        for i in positions:
            shape, dtype, fmt = self.layout(keys[i])
            obj = self._alloc(shape, dtype, fmt)
            if obj is None:
                continue
            objs.append(obj)
            pos_ok.append(i)
        if not pos_ok:
            return retry
        m = len(pos_ok)
        heads = ctypes.create_string_buffer(HEADER_SIZE * m)
        base = ctypes.addressof(heads)
        ranges = [(base, HEADER_SIZE * m)]
        addrs, sizes, tensors = [], [], []
        for j, obj in enumerate(objs):
            t = _obj_tensor(obj)
            tensors.append(t)
            nb = _nbytes(t)
            addrs.append([base + j * HEADER_SIZE, t.data_ptr()] if nb else [base + j * HEADER_SIZE])
            sizes.append([HEADER_SIZE, nb] if nb else [HEADER_SIZE])
            ranges.append((t.data_ptr(), nb))
        codes = self._with_regions(ranges, lambda: self.store.batch_get_into_multi_buffers(
            [keys[i] for i in pos_ok], addrs, sizes))
        for j, (i, obj, code) in enumerate(zip(pos_ok, objs, codes)):
            k = keys[i]
            if code == E.NOT_FOUND:
                self.forget(k)
                _ref_down(obj)
                continue
            if code == E.BUFFER_TOO_SMALL:  # the value changed shape: take the slow path
                self.forget(k)
                _ref_down(obj)
                retry.append(i)
                continue
            if code < 0:
                _ref_down(obj)
                continue
            hdr = decode_header(heads[j * HEADER_SIZE:(j + 1) * HEADER_SIZE], self._fmt_cls)
            if hdr is None or HEADER_SIZE + hdr[3] != code:
                if hdr is not None:  # valid header but another size: re-read through the slow path
                    retry.append(i)
                else:
                    logger.warning("kvasir: value of %s has no valid header: treated as a miss", k)
                self.forget(k)
                _ref_down(obj)
                continue
            shape, dtype, fmt, _ = hdr
            want = self.layout(k)
            if want is None or (shape, dtype) != (want[0], want[1]) or _fmt_value(fmt) != _fmt_value(want[2]):
                self.forget(k)
                _ref_down(obj)
                retry.append(i)
                continue
            out[i] = obj
        return retry

    def _get_unknown(self, key: str):
        """Fetches the value into a temporary buffer, parses its header, allocates and copies."""
        with self._io_lock:
            try:
                raw = self.store.get(key)
            except Exception as ex:  # noqa: BLE001 - unavailable/timeout: a miss
                logger.warning("kvasir: get %s failed: %s", key, ex)
                return None
        if raw is None:
            return None
        hdr = decode_header(raw, self._fmt_cls)
        if hdr is None or len(raw) != HEADER_SIZE + hdr[3]:
            logger.warning("kvasir: value of %s has no valid header: treated as a miss", key)
            return None
        shape, dtype, fmt, plen = hdr
        obj = self._alloc(shape, dtype, fmt)
        if obj is None:
            return None
        try:
            t = _obj_tensor(obj)
            if _nbytes(t) != plen:
                raise ValueError("allocated object has another size")
            if plen:
                src = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value + HEADER_SIZE
                ctypes.memmove(t.data_ptr(), src, plen)
        except Exception as ex:  # noqa: BLE001
            logger.warning("kvasir: cannot fill object for %s: %s", key, ex)
            _ref_down(obj)
            return None
        self.remember(key, (shape, dtype, fmt))
        return obj

    def exists(self, keys: Sequence[str]) -> List[bool]:
        return [r == 1 for r in self.store.batch_is_exist(list(keys))]

    def prefix_hits(self, keys: Sequence[str]) -> int:
        n = 0
        for r in self.store.batch_is_exist(list(keys)) if keys else []:
            if r != 1:
                break
            n += 1
        return n


# ---------------------------------------------------------------- asynchronous lookups (enable_async_loading)

class LookupPins:
    """Pins taken by ``batched_async_contains(lookup_id, keys, pin=True)``, released when that lookup is
    loaded (``batched_get_non_blocking``) or cancelled, or after ``max_age`` seconds if neither comes
    (LMCache's asynchronous path keeps no record of them, so nothing else would unpin them)."""

    def __init__(self, store: KvStore, max_age: float = 600.0):
        self.store = store
        self.max_age = max_age
        self._lock = threading.Lock()
        self._pins: Dict[str, Tuple[float, List[str]]] = {}

    def pin_prefix(self, lookup_id: str, keys: List[str]) -> int:
        """Pins ``keys`` (a prefix of hits); returns how many leading keys hold a pin now."""
        self.sweep()
        codes = self.store.batch_pin(keys) if keys else []
        held = next((i for i, c in enumerate(codes) if c != E.OK), len(codes))
        extra = [k for k, c in zip(keys[held:], codes[held:]) if c == E.OK]
        if extra:  # pinned after a key that could not be: not part of the prefix, so not kept
            self.store.batch_unpin(extra)
        if held:
            with self._lock:
                _, before = self._pins.get(lookup_id, (0.0, []))
                self._pins[lookup_id] = (time.monotonic(), before + keys[:held])
        return held

    def release(self, lookup_id: str) -> None:
        with self._lock:
            entry = self._pins.pop(lookup_id, None)
        if entry:
            self._unpin(entry[1])

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [lid for lid, (t, _) in self._pins.items() if now - t > self.max_age]
            stale = [self._pins.pop(lid)[1] for lid in old]
        for keys in stale:
            self._unpin(keys)

    def release_all(self) -> None:
        with self._lock:
            lids = list(self._pins)
        for lid in lids:
            self.release(lid)

    def _unpin(self, keys: List[str]) -> None:
        try:
            self.store.batch_unpin(keys)
        except Exception as ex:  # noqa: BLE001 - the node is gone: its pins went with it
            logger.warning("kvasir: unpin of %d key(s) failed: %s", len(keys), ex)


async def async_prefix_hits(io: "_KvasirCodecIO", pins: LookupPins, lookup_id: str, keys, pin: bool) -> int:
    """``batched_async_contains``: the number of leading keys present (pinned for ``lookup_id`` if asked)."""
    ks = [_key_str(k) for k in keys]
    loop = asyncio.get_running_loop()
    n = await loop.run_in_executor(None, io.prefix_hits, ks)
    if pin and n:
        n = await loop.run_in_executor(None, pins.pin_prefix, lookup_id, ks[:n])
    return n


async def async_load_prefix(io: "_KvasirCodecIO", pins: LookupPins, lookup_id: str, keys) -> list:
    """``batched_get_non_blocking``: the MemoryObjs of the leading keys that load (the rest released),
    then the lookup's pins dropped."""
    try:
        objs = await asyncio.get_running_loop().run_in_executor(None, io.get, [_key_str(k) for k in keys])
        n = next((i for i, o in enumerate(objs) if o is None), len(objs))
        for o in objs[n:]:
            if o is not None:
                _ref_down(o)
        return objs[:n]
    finally:
        pins.release(lookup_id)
