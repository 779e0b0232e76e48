"""SGLang HiCache (L3) storage backend over :class:`kvasir.KvStore`.

Interfaces mirrored (read from sgl-project/sglang on GitHub; sglang cannot be installed here):

* ``python/sglang/srt/mem_cache/hicache_storage.py`` (commit 001067ff...): ``HiCacheStorage``
  (abstract get/batch_get/set/batch_set/exists; batch_exists(keys, extra_info=None) -> int,
  batch_get_v1/batch_set_v1(keys, host_indices, extra_info=None) -> List[bool],
  register_mem_pool_host(mem_pool_host), register_mem_host_pool_v2(host_pool, host_pool_name),
  batch_exists_v2(keys, pool_transfers=None, extra_info=None) -> PoolTransferResult,
  batch_get_v2/batch_set_v2(transfers, extra_info=None) -> dict[str, List[bool]], clear(),
  get_stats()), ``HiCacheStorageConfig``, ``HiCacheStorageExtraInfo``, ``PoolName`` (with the
  DeepSeek V4 compressed pools and DRAFT_INDEXER / DRAFT_SWA), ``PoolHitPolicy``, ``PoolTransfer``
  (a sidecar transfer names its source in ``indices_from_pool``), ``SidecarPoolSpec``,
  ``PoolTransferResult`` (update_kv_hit_pages / update_extra_pool_hit_pages), ``count_pool_hits``,
  ``STORAGE_BATCH_SIZE``.
* ``python/sglang/srt/mem_cache/storage/backend_factory.py`` (commit 001067ff...): with
  ``--hicache-storage-backend dynamic`` the factory reads ``backend_name``, ``module_path`` and
  ``class_name`` from the extra config, checks ``issubclass(cls, HiCacheStorage)`` and constructs
  ``cls(storage_config, kwargs)``; the cache controller then calls ``register_mem_pool_host``.
  The controller uses the zero-copy ``batch_get_v1``/``batch_set_v1`` path for a dynamic backend
  only when the extra config holds ``"interface_v1": 1``; otherwise it uses the generic path
  (``batch_get(keys, target_locations=[flat page tensors])`` / ``batch_set(keys, values=[page
  tensors])``).
* ``python/sglang/srt/managers/cache_controller.py`` (commit 001067ff...) and
  ``python/sglang/srt/mem_cache/hybrid_cache/hybrid_cache_controller.py`` (commit 00343773...): the callers of
  the writes. ``_page_backup`` hands ``page_set_func`` one request's pages in prefix order, up to
  ``STORAGE_BATCH_SIZE`` at a time, with ``HiCacheStorageExtraInfo(prefix_keys=...)`` (the pages before them, when
  it has them); the zero-copy path passes it on to ``batch_set_v1``, the generic ``_generic_page_set`` calls
  ``batch_set(keys, values)`` without it; the hybrid controller's ``_page_backup`` calls
  ``batch_set_v2(transfers)`` (no ``extra_info``) for its side pools, each transfer one operation's pages.
  Every path stores them as a chain (docs/connectors.md "Chains").
* ``python/sglang/srt/mem_cache/storage/mooncake_store/mooncake_store.py`` (commit 00fe477f...):
  key layout (model-name prefix; ``{key}_{tp_rank}_k`` / ``_v`` for MHA, ``{key}_{pp}_k`` with no
  TP rank for MLA; pp rank added when pp_size > 1), page pointers from the host pool's
  ``get_page_buffer_meta(indices)`` (K and V pointer per page for MHA page-first layouts, one or
  several per page for MLA -- packed into multi-buffer objects), skip-existing writes, and
  StorageMetrics-style ``get_stats``.

When ``sglang`` is importable its real classes are used (and subclassed); otherwise the stand-ins
below, with the same names, fields and signatures, are used.

Keys in Kvasir
--------------
``[{extra_backend_tag}_][{model}_]{key}`` + a rank suffix: ``_{tp_rank}`` (``_{tp_rank}_{pp_rank}``
with PP) for MHA, nothing (``_{pp_rank}`` with PP) for MLA, plus ``_cp{rank}_{size}`` under attention
context parallelism. Zero-copy pages add ``_k`` / ``_v`` (MHA) or ``_k`` (MLA); the generic
(tensor) path stores one object per key with the bare suffix; v2 side pools add
``_{pool_name}`` and, for several objects per page, ``_{i}``. For MLA every rank reads the shared
keys and only TP rank 0 writes (other ranks' writes report success without sending anything).
"""

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import errors as E
from ..store import KvStore

logger = logging.getLogger(__name__)

__all__ = ["KvasirHiCacheStorage", "KvasirStorageMetrics"]

from ._sglang_pools import PoolTransfers, pool_name_str as _pool_name_str
from ._sglang_compat import (  # noqa: F401 - sglang's classes or their stand-ins
    HAVE_SGLANG,
    HiCacheStorage,
    HiCacheStorageConfig,
    HiCacheStorageExtraInfo,
    PoolHitPolicy,
    PoolName,
    PoolTransfer,
    PoolTransferResult,
    STORAGE_BATCH_SIZE,
    SidecarPoolSpec,
    count_pool_hits,
)


def _storage_metrics_cls():
    """sglang's ``StorageMetrics`` when importable (its module moved between versions)."""
    for mod in ("sglang.srt.observability.metrics_collector", "sglang.srt.metrics.collector"):
        try:  # pragma: no cover
            return getattr(__import__(mod, fromlist=["StorageMetrics"]), "StorageMetrics")
        except Exception:  # noqa: BLE001
            continue
    return None


@dataclass
class KvasirStorageMetrics:
    """Same fields as sglang's ``StorageMetrics`` (used when sglang is not importable)."""
    prefetch_pgs: List[int] = dataclasses.field(default_factory=list)
    backup_pgs: List[int] = dataclasses.field(default_factory=list)
    prefetch_bandwidth: List[float] = dataclasses.field(default_factory=list)
    backup_bandwidth: List[float] = dataclasses.field(default_factory=list)


def _tensor_nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# --- the backend -----------------------------------------------------------------------------------

class KvasirHiCacheStorage(PoolTransfers, HiCacheStorage):
    """HiCache L3 backend storing KV pages in a Kvasir node.

    ``KvasirHiCacheStorage(storage_config, kwargs=None)`` -- the ``dynamic`` factory's call.

    Extra-config keys (``--hicache-storage-backend-extra-config`` JSON; all optional):
    ``servers`` (``"host:port"``, list or comma-separated), ``auth_key`` (64 hex chars),
    ``transport``, ``connect_timeout``, ``request_timeout`` -- anything unset falls back to
    ``KVASIR_CONFIG`` / ``KVASIR_*`` environment variables exactly as :class:`KvStore` does;
    ``interface_v1`` (1: zero-copy page I/O, also what tells sglang to call batch_*_v1);
    ``extra_backend_tag`` (key prefix isolating tenants). ``clear()`` removes every key under this backend's
    prefix (tag and model) on every node, or every key when there is no prefix (the node's REMOVE_PREFIX);
    ``track_keys_for_clear`` is accepted for old configurations and no longer needed.
    ``kwargs`` may carry ``mem_pool_host`` (registered at once) or ``store`` (a ready KvStore).
    """

    def __init__(self, storage_config: Optional[HiCacheStorageConfig] = None, kwargs: Optional[dict] = None):
        kwargs = dict(kwargs or {})
        extra = dict(getattr(storage_config, "extra_config", None) or {})
        self.storage_config = storage_config
        self.extra_config = extra

        store = kwargs.get("store")
        if store is None:
            store = KvStore(extra.get("servers"), extra.get("auth_key"), extra.get("transport"),
                            connect_timeout=extra.get("connect_timeout"),
                            request_timeout=extra.get("request_timeout"))
            self._owns_store = True
        else:
            self._owns_store = False
        self.store = store

        sc = storage_config
        self.tp_rank = int(getattr(sc, "tp_rank", 0) or 0)
        self.tp_size = int(getattr(sc, "tp_size", 1) or 1)
        self.pp_rank = int(getattr(sc, "pp_rank", 0) or 0)
        self.pp_size = int(getattr(sc, "pp_size", 1) or 1)
        self.attn_cp_rank = int(getattr(sc, "attn_cp_rank", 0) or 0)
        self.attn_cp_size = int(getattr(sc, "attn_cp_size", 1) or 1)
        self.is_mla_backend = bool(getattr(sc, "is_mla_model", False))
        self.enable_storage_metrics = bool(getattr(sc, "enable_storage_metrics", False))
        self.local_rank = self.tp_rank
        if getattr(sc, "should_split_heads", False):
            logger.warning("KvasirHiCacheStorage: should_split_heads is not supported; "
                           "pages are stored per TP rank as the host pool lays them out")

        # Prefix: backend tag + model name ('/' -> '-'), as Mooncake's config_prefix.
        parts = []
        if extra.get("extra_backend_tag") is not None:
            parts.append(str(extra["extra_backend_tag"]))
        model_name = getattr(sc, "model_name", None)
        if model_name:
            parts.append("-".join(str(model_name).split("/")))
        self.config_prefix = "_".join(parts) if parts else None

        self.enable_pp = self.pp_size > 1
        if self.enable_pp:
            self.mha_suffix = f"{self.tp_rank}_{self.pp_rank}"
            self.mla_suffix = f"{self.pp_rank}"
        else:
            self.mha_suffix = f"{self.tp_rank}"
            self.mla_suffix = ""
        if self.attn_cp_size > 1:  # each CP rank holds a disjoint slice of every page (as HiCacheFile)
            cp = f"cp{self.attn_cp_rank}_{self.attn_cp_size}"
            self.mha_suffix = f"{self.mha_suffix}_{cp}"
            self.mla_suffix = f"{self.mla_suffix}_{cp}" if self.mla_suffix else cp
        self.suffix = self.mla_suffix if self.is_mla_backend else self.mha_suffix
        # MLA: K/V are replicated across TP ranks, so only rank 0 writes.
        self.skip_writes = self.is_mla_backend and self.tp_rank != 0

        self.interface_v1 = bool(int(extra.get("interface_v1", 0) or 0))
        self._lock = threading.Lock()
        self._temp_regions: Dict[int, Tuple[int, int]] = {}  # ptr -> (size, refcount)
        self.registered_pools: Dict[Any, Any] = {}
        self.mem_pool_host = None
        self.gb_per_page = None
        self.prefetch_pgs: List[int] = []
        self.backup_pgs: List[int] = []
        self.prefetch_bandwidth: List[float] = []
        self.backup_bandwidth: List[float] = []
        self._closed = False
        if kwargs.get("mem_pool_host") is not None:
            self.register_mem_pool_host(kwargs["mem_pool_host"])

    # -- keys --

    def _tag(self, key: str) -> str:
        return key if self.config_prefix is None else f"{self.config_prefix}_{key}"

    def _object_key(self, key: str) -> str:
        """Key of a generic-path (tensor) object."""
        base = self._tag(key)
        return f"{base}_{self.suffix}" if self.suffix else base

    def _page_keys(self, key: str) -> List[str]:
        """Kvasir keys of one zero-copy KV page (Mooncake layout)."""
        base = self._tag(key)
        if self.is_mla_backend:
            return [f"{base}_{self.mla_suffix}_k"]
        return [f"{base}_{self.mha_suffix}_k", f"{base}_{self.mha_suffix}_v"]

    # -- buffers --

    def _register_pool_buffers(self, pool) -> None:
        get_buffers = getattr(pool, "get_hybrid_pool_buffer", None)
        buffers = list(get_buffers()) if get_buffers is not None else [getattr(pool, "kv_buffer", None)]
        for buf in buffers:
            if isinstance(buf, (list, tuple)):
                for b in buf:
                    self._register_tensor(b)
            else:
                self._register_tensor(buf)

    def _register_tensor(self, t) -> None:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            if t.device.type != "cpu":
                raise ValueError("KvasirHiCacheStorage needs host (CPU) memory pool buffers")
            self.store.register_buffer(t.data_ptr(), _tensor_nbytes(t))

    def _acquire_temp(self, ptr: int, size: int) -> None:
        with self._lock:
            old = self._temp_regions.get(ptr)
            if old is None:
                self._temp_regions[ptr] = (size, 1)
                self.store.register_buffer(ptr, size)
            else:
                self._temp_regions[ptr] = (max(old[0], size), old[1] + 1)
                if size > old[0]:
                    self.store.register_buffer(ptr, size)

    def _release_temp(self, ptr: int) -> None:
        with self._lock:
            size, refs = self._temp_regions[ptr]
            if refs > 1:
                self._temp_regions[ptr] = (size, refs - 1)
            else:
                del self._temp_regions[ptr]
                self.store.unregister_buffer(ptr)

    @contextlib.contextmanager
    def _temp_regions_for(self, ptrs, sizes):
        """Registers each (ptr, size) as a temporary region for the duration of the block."""
        held = []
        try:
            for p, sz in zip(ptrs, sizes):
                self._acquire_temp(p, sz)
                held.append(p)
            yield
        finally:
            for p in held:
                self._release_temp(p)

    def register_mem_pool_host(self, mem_pool_host) -> None:
        """Registers the host KV pool: its buffers become zero-copy regions of the store."""
        super().register_mem_pool_host(mem_pool_host)
        if getattr(mem_pool_host, "kv_buffer", None) is not None:
            self._register_pool_buffers(mem_pool_host)
        try:
            self.gb_per_page = mem_pool_host.get_ksize_per_token() * mem_pool_host.page_size / (1 << 30)
        except Exception:  # noqa: BLE001 - metrics use measured bytes anyway
            self.gb_per_page = None

    def register_mem_host_pool_v2(self, host_pool, host_pool_name) -> None:
        """Registers a v2 (hybrid/sidecar) host pool under its ``PoolName``."""
        self.registered_pools[host_pool_name] = host_pool
        if _pool_name_str(host_pool_name) == "kv" and host_pool is self.mem_pool_host:
            return
        self._register_pool_buffers(host_pool)

    # -- store helpers --

    def _exist(self, keys: List[str]) -> List[int]:
        return self.store.batch_is_exist(keys) if keys else []

    def _put(self, keys: List[str], ptrs: List[Any], sizes: List[Any], chain: bool = False,
             parent: Optional[str] = None) -> List[int]:
        if not keys:
            return []
        links = {"chain": True, "chain_parent": parent} if chain else {}
        if isinstance(ptrs[0], Sequence):
            res = self.store.batch_put_from_multi_buffers(keys, ptrs, sizes, **links)
        else:
            res = self.store.batch_put_from(keys, ptrs, sizes, **links)
        return res

    def _get_into(self, keys: List[str], ptrs: List[Any], sizes: List[Any]) -> List[int]:
        if not keys:
            return []
        if isinstance(ptrs[0], Sequence):
            return self.store.batch_get_into_multi_buffers(keys, ptrs, sizes)
        return self.store.batch_get_into(keys, ptrs, sizes)

    @staticmethod
    def _total(size) -> int:
        return sum(size) if isinstance(size, Sequence) else int(size)

    def _put_missing(self, keys, ptrs, sizes, chain: bool = False, parent: Optional[str] = None,
                     write: Optional[List[int]] = None) -> List[int]:
        """Writes the keys not already stored (pages are immutable: same key, same bytes); per key 0 or a negative code.
        ``write``: the positions that have a value here (default all); the others are neither asked nor written.
        ``chain``: ``keys`` are one request's objects in prefix order, ``parent`` the stored key the first continues.
        The keys left to write then go as chains (issue 17), one put per run of consecutive positions, each run
        continuing the key just before it (already stored, or without a value here: a parent the node does not hold
        is no link) and the first run ``parent``; without ``chain`` in one put, unlinked."""
        positions = list(range(len(keys))) if write is None else list(write)
        results = [E.NOT_FOUND] * len(keys)
        todo = []
        for i, e in zip(positions, self._exist([keys[i] for i in positions])):
            if e == 1:
                results[i] = E.OK
            else:
                todo.append(i)
        runs = [] if chain or not todo else [todo]
        for i in todo if chain else ():
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            link = (keys[run[0] - 1] if run[0] > 0 else parent) if chain else None
            put = self._put([keys[i] for i in run], [ptrs[i] for i in run], [sizes[i] for i in run], chain, link)
            for i, r in zip(run, put):
                results[i] = r
        return results

    @staticmethod
    def _group(ok: List[bool], n: int) -> List[bool]:
        if n == 0:
            return []
        m = len(ok) // n if n else 0
        if m == 0:
            return [False] * n
        return [all(ok[i * m:(i + 1) * m]) for i in range(n)]

    @staticmethod
    def _pack(keys: List[str], ptrs: List[int], sizes: List[int]):
        """Groups per-buffer pointers into per-key multi-buffer lists when a page has several."""
        if len(ptrs) == len(keys):
            return ptrs, sizes
        if not keys or len(ptrs) % len(keys) or len(ptrs) != len(sizes):
            raise ValueError(f"host pool returned {len(ptrs)} page buffers for {len(keys)} storage objects")
        n = len(ptrs) // len(keys)
        return ([list(ptrs[i:i + n]) for i in range(0, len(ptrs), n)],
                [list(sizes[i:i + n]) for i in range(0, len(sizes), n)])

    def _v1_meta(self, keys: List[str], host_indices: torch.Tensor):
        pool = self.mem_pool_host
        if pool is None:
            raise RuntimeError("register_mem_pool_host() must be called before batch_*_v1")
        page_size = int(getattr(pool, "page_size", 1) or 1)
        if len(keys) != len(host_indices) // page_size:
            raise ValueError(f"{len(keys)} keys but {len(host_indices)} host indices (page size {page_size})")
        key_strs = [k for key in keys for k in self._page_keys(key)]
        ptrs, sizes = pool.get_page_buffer_meta(host_indices)
        ptrs, sizes = self._pack(key_strs, list(ptrs), list(sizes))
        return key_strs, ptrs, sizes

    def _record(self, which: str, pages: int, nbytes: int, seconds: float) -> None:
        if not self.enable_storage_metrics or pages == 0:
            return
        gbps = nbytes / (1 << 30) / max(seconds, 1e-9)
        with self._lock:
            if which == "get":
                self.prefetch_pgs.append(pages)
                self.prefetch_bandwidth.append(gbps)
            else:
                self.backup_pgs.append(pages)
                self.backup_bandwidth.append(gbps)

    # -- zero-copy v1 --

    def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor,
                     extra_info: Optional[HiCacheStorageExtraInfo] = None) -> List[bool]:
        """Reads pages straight into the host pool; per key True when every object of the page
        arrived with exactly the expected size."""
        if not keys:
            return []
        if self.mem_pool_host is not None and getattr(self.mem_pool_host, "kv_buffer", 0) is None:
            return [True] * len(keys)  # logical-only KV anchor (v2 side pools carry the data)
        key_strs, ptrs, sizes = self._v1_meta(keys, host_indices)
        t0 = time.perf_counter()
        res = self._get_into(key_strs, ptrs, sizes)
        ok = [r == self._total(s) for r, s in zip(res, sizes)]
        self._record("get", len(keys), sum(max(r, 0) for r in res), time.perf_counter() - t0)
        return self._group(ok, len(keys))

    def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor,
                     extra_info: Optional[HiCacheStorageExtraInfo] = None) -> List[bool]:
        """Writes pages straight from the host pool (pages already stored are skipped); per key True
        when every object of the page is stored."""
        if not keys:
            return []
        if self.skip_writes or (self.mem_pool_host is not None
                                and getattr(self.mem_pool_host, "kv_buffer", 0) is None):
            return [True] * len(keys)
        key_strs, ptrs, sizes = self._v1_meta(keys, host_indices)
        # sglang hands one request's pages in prefix order, with the pages before them in extra_info.prefix_keys
        prefix = getattr(extra_info, "prefix_keys", None) if extra_info is not None else None
        parent = self._page_keys(prefix[-1])[-1] if prefix else None
        t0 = time.perf_counter()
        res = self._put_missing(key_strs, ptrs, sizes, chain=True, parent=parent)
        self._record("set", len(keys), sum(self._total(s) for s in sizes), time.perf_counter() - t0)
        return self._group([r == E.OK for r in res], len(keys))

    # -- existence --

    def _exists_keys(self, keys: List[str]) -> Tuple[List[str], int]:
        if self.interface_v1:
            per = self._page_keys(keys[0]) if keys else []
            return [k for key in keys for k in self._page_keys(key)], max(len(per), 1)
        return [self._object_key(k) for k in keys], 1

    def batch_exists(self, keys: List[str], extra_info: Optional[HiCacheStorageExtraInfo] = None) -> int:
        """Number of consecutive keys present from the start (zero-copy pages with
        ``interface_v1``, generic-path objects otherwise)."""
        if not keys:
            return 0
        query, m = self._exists_keys(keys)
        exist = self._exist(query)
        for i, e in enumerate(exist):
            if e != 1:
                return i // m
        return len(keys)

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    # -- generic (tensor) path --

    def _put_tensor_or_ptr(self, keys, values, target_locations, target_sizes, chain: bool) -> List[bool]:
        """Stores tensors (``values``) or raw ``(target_locations, target_sizes)`` ranges; ``chain``: the keys are one
        request's pages in prefix order (a chain from no parent: these calls carry no prefix keys)."""
        n = len(keys)
        ok = [False] * n
        ptrs, sizes, idx, hold = [None] * n, [None] * n, [], []
        for i in range(n):
            v = values[i] if values is not None else None
            if isinstance(v, torch.Tensor):
                t = v.detach()
                if t.device.type != "cpu":
                    t = t.cpu()
                t = t.contiguous()
                hold.append(t)
                p, s = t.data_ptr(), _tensor_nbytes(t)
            elif target_locations is not None and target_locations[i] is not None and target_sizes is not None:
                loc = target_locations[i]
                if isinstance(loc, torch.Tensor):
                    t = loc.detach().contiguous() if loc.device.type == "cpu" else loc.detach().cpu().contiguous()
                    hold.append(t)
                    p, s = t.data_ptr(), _tensor_nbytes(t)
                else:
                    p, s = int(loc), int(target_sizes[i])
            else:
                continue
            if s == 0:
                continue
            ptrs[i], sizes[i] = p, s
            idx.append(i)
        with self._temp_regions_for([ptrs[i] for i in idx], [sizes[i] for i in idx]):
            t0 = time.perf_counter()
            res = self._put_missing([self._object_key(k) for k in keys], ptrs, sizes, chain=chain, write=idx)
            self._record("set", len(idx), sum(sizes[i] for i in idx), time.perf_counter() - t0)
        for i in idx:
            ok[i] = res[i] == E.OK
        return ok

    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        """Stores a tensor (``value``), or ``target_sizes`` bytes at address ``target_location``."""
        if self.skip_writes:
            return True
        locs = None if target_location is None else [target_location]
        sizes = None if target_sizes is None else [target_sizes]
        # one key: its neighbours (and so its chain parent) are unknown here, so it is stored unlinked
        return self._put_tensor_or_ptr([key], [value], locs, sizes, chain=False)[0]

    def batch_set(self, keys: List[str], values: Optional[Any] = None, target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> bool:
        """Stores several tensors / address ranges; True when all are stored. sglang's generic page set passes one
        request's pages in prefix order (cache_controller.py ``_generic_page_set``) without its prefix keys: they are
        stored as a chain from no parent (issue 17)."""
        if not keys:
            return False
        if self.skip_writes:
            return True
        return all(self._put_tensor_or_ptr(list(keys), values, target_locations, target_sizes, chain=True))

    def _dtype(self):
        return getattr(self.mem_pool_host, "dtype", None) if self.mem_pool_host is not None else None

    def _get_one_alloc(self, key: str) -> Optional[torch.Tensor]:
        try:
            data = self.store.get(self._object_key(key))
        except Exception as ex:  # noqa: BLE001 - a failed read is a miss for HiCache
            logger.warning("KvasirHiCacheStorage.get(%s) failed: %s", key, ex)
            return None
        if data is None:
            return None
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        dtype = self._dtype()
        if isinstance(dtype, torch.dtype) and dtype != torch.uint8:
            esize = torch.tensor([], dtype=dtype).element_size()
            if t.numel() % esize == 0:
                t = t.view(dtype)
        return t

    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None):
        """Generic path: ``target_locations`` is a list of tensors (sglang passes flat dummy pages)
        read into in place -> per key that tensor or None. With raw addresses
        (``target_locations`` ints + ``target_sizes``) -> number of consecutive keys read from
        the start (as Mooncake). Without targets -> per key a new tensor or None."""
        keys = list(keys)
        if not keys:
            return 0 if target_locations is not None and target_sizes is not None and not any(
                isinstance(t, torch.Tensor) for t in target_locations) else []
        if target_locations is None:
            return [self._get_one_alloc(k) for k in keys]
        raw = not isinstance(target_locations[0], torch.Tensor)
        out: List[Optional[torch.Tensor]] = [None] * len(keys)
        ptrs, sizes, idx, bounce = [], [], [], {}
        for i, loc in enumerate(target_locations):
            if loc is None:
                continue
            if isinstance(loc, torch.Tensor):
                dst = loc if (loc.device.type == "cpu" and loc.is_contiguous()) else torch.empty(
                    loc.shape, dtype=loc.dtype)
                if dst is not loc:
                    bounce[i] = dst
                p, s = dst.data_ptr(), _tensor_nbytes(dst)
            else:
                p, s = int(loc), int(target_sizes[i])
            if s == 0:
                continue
            ptrs.append(p)
            sizes.append(s)
            idx.append(i)
        with self._temp_regions_for(ptrs, sizes):
            t0 = time.perf_counter()
            res = self._get_into([self._object_key(keys[i]) for i in idx], ptrs, sizes)
            self._record("get", len(idx), sum(max(r, 0) for r in res), time.perf_counter() - t0)
        hit = [False] * len(keys)
        for i, r, s in zip(idx, res, sizes):
            if r == s:
                hit[i] = True
                loc = target_locations[i]
                if isinstance(loc, torch.Tensor):
                    if i in bounce:
                        loc.copy_(bounce[i])
                    out[i] = loc
        if raw:
            return hit.index(False) if False in hit else len(keys)
        return out

    def get(self, key: str, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None):
        """The value of ``key``: read into ``target_location`` (a tensor, returned) or as a new
        tensor (the host pool's dtype when known, else uint8); None on a miss. With a raw
        address + ``target_sizes``: True/False (as Mooncake)."""
        if target_location is None:
            return self._get_one_alloc(key)
        if isinstance(target_location, torch.Tensor):
            return self.batch_get([key], [target_location])[0]
        return self.batch_get([key], [target_location], [target_sizes]) == 1

    # -- lifecycle --

    def clear(self) -> None:
        """Removes every key under this backend's prefix (``extra_backend_tag`` and model name) from every tier
        of every node, a page at a time on each node; with no prefix configured, every key (sglang's clear
        empties the storage). Raises :class:`KvasirError` naming a node that could not do it."""
        self.store.remove_prefix(f"{self.config_prefix}_" if self.config_prefix is not None else b"")

    def get_stats(self):
        """sglang's ``StorageMetrics`` (or :class:`KvasirStorageMetrics` without sglang) with the
        pages and GB/s of each prefetch/backup since the last call (needs
        ``enable_storage_metrics``); the lists are drained."""
        cls = _storage_metrics_cls() or KvasirStorageMetrics
        m = cls()
        with self._lock:
            m.prefetch_pgs.extend(self.prefetch_pgs)
            m.backup_pgs.extend(self.backup_pgs)
            m.prefetch_bandwidth.extend(self.prefetch_bandwidth)
            m.backup_bandwidth.extend(self.backup_bandwidth)
            self.prefetch_pgs.clear()
            self.backup_pgs.clear()
            self.prefetch_bandwidth.clear()
            self.backup_bandwidth.clear()
        return m

    def node_stats(self) -> dict:
        """The Kvasir node's counters (STATS)."""
        return self.store.stats()

    def close(self) -> None:
        """Closes the connection (when this backend opened it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_store:
            self.store.close()
