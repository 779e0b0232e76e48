"""sglang's HiCache classes, or stand-ins mirroring their signatures when sglang is not importable.
Used by sglang.py; see its docstring for the upstream files and commits mirrored."""

from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional
import torch

# --- sglang's classes, or stand-ins mirroring them -----------------------------------------------

try:  # pragma: no cover - sglang is not installed in the test environment
    from sglang.srt.mem_cache.hicache_storage import (  # type: ignore
        HiCacheStorage, HiCacheStorageConfig, HiCacheStorageExtraInfo, PoolTransferResult)
    try:
        from sglang.srt.mem_cache.hicache_storage import PoolHitPolicy, PoolName, PoolTransfer  # type: ignore
    except Exception:  # noqa: BLE001 - older trees without the v2 interface
        PoolHitPolicy = PoolName = PoolTransfer = None
    try:
        from sglang.srt.mem_cache.hicache_storage import (  # type: ignore
            STORAGE_BATCH_SIZE, SidecarPoolSpec, count_pool_hits)
    except Exception:  # noqa: BLE001 - trees before sidecar pools
        STORAGE_BATCH_SIZE, SidecarPoolSpec, count_pool_hits = 128, None, None
    HAVE_SGLANG = True
except Exception:  # noqa: BLE001
    HAVE_SGLANG = False
    from abc import ABC, abstractmethod

    @dataclass
    class HiCacheStorageConfig:
        """Stand-in mirroring sglang's ``HiCacheStorageConfig`` (hicache_storage.py @ 001067ff)."""
        tp_rank: int
        tp_size: int
        pp_rank: int
        pp_size: int
        attn_cp_rank: int
        attn_cp_size: int
        is_mla_model: bool
        enable_storage_metrics: bool
        is_page_first_layout: bool
        model_name: Optional[str]
        dp_rank: int = 0
        dp_size: int = 1
        tp_lcm_size: Optional[int] = None
        should_split_heads: bool = False
        extra_config: Optional[dict] = None

    @dataclass
    class HiCacheStorageExtraInfo:
        """Stand-in mirroring sglang's ``HiCacheStorageExtraInfo``."""
        prefix_keys: Optional[List[str]] = None
        extra_info: Optional[dict] = None

    STORAGE_BATCH_SIZE = 128  # sglang: max pages per batched storage IO call

    class PoolName(str, Enum):
        """Stand-in mirroring sglang's ``PoolName`` (hicache_storage.py @ 001067ff, the stored version
        with the DeepSeek V4 compressed pools and the draft indexer / SWA pools): every member, same
        values. The backend keys any pool by its value, so a new name needs no code here."""
        KV = "kv"
        MAMBA = "mamba"
        SWA = "swa"
        INDEXER = "indexer"
        DEEPSEEK_V4_C4 = "deepseek_v4_c4"
        DEEPSEEK_V4_C4_INDEXER = "deepseek_v4_c4_indexer"
        DEEPSEEK_V4_C128 = "deepseek_v4_c128"
        DEEPSEEK_V4_C4_STATE = "deepseek_v4_c4_state"
        DEEPSEEK_V4_C4_INDEXER_STATE = "deepseek_v4_c4_indexer_state"
        DEEPSEEK_V4_C128_STATE = "deepseek_v4_c128_state"
        DRAFT = "draft"
        DRAFT_INDEXER = "draft_indexer"
        DRAFT_SWA = "draft_swa"

        def __str__(self) -> str:
            return self.value

    class PoolHitPolicy(str, Enum):
        """Stand-in mirroring sglang's ``PoolHitPolicy``."""
        ALL_PAGES = "all_pages"
        TRAILING_PAGES = "trailing_pages"

    @dataclass
    class PoolTransfer:
        """Stand-in mirroring sglang's ``PoolTransfer``."""
        name: Any
        host_indices: Optional[torch.Tensor] = None
        device_indices: Optional[torch.Tensor] = None
        keys: Optional[List[str]] = None
        hit_policy: Any = PoolHitPolicy.ALL_PAGES
        nodes_to_load: Optional[List[Any]] = None
        indices_from_pool: Optional[Any] = None

    @dataclass(frozen=True)
    class SidecarPoolSpec:
        """Stand-in mirroring sglang's ``SidecarPoolSpec``: a pool whose transfer indices are reused
        from one real source pool (a ``PoolTransfer`` with ``indices_from_pool`` set)."""
        pool_name: Any
        indices_from_pool: Any
        hit_policy: Any = PoolHitPolicy.ALL_PAGES

    @dataclass
    class PoolTransferResult:
        """Stand-in mirroring sglang's ``PoolTransferResult``."""
        kv_hit_pages: int
        extra_pool_hit_pages: dict

        @classmethod
        def empty(cls):
            return cls(0, {})

        def update_kv_hit_pages(self, kv_hit_pages: int) -> None:
            self.kv_hit_pages = max(self.kv_hit_pages, kv_hit_pages)

        def update_extra_pool_hit_pages(self, results: dict) -> None:
            self.extra_pool_hit_pages.update(results)

    def count_pool_hits(results: dict) -> dict:
        """Stand-in mirroring sglang's ``count_pool_hits``: the leading successes per pool."""
        return {name: (rs.index(False) if False in rs else len(rs)) for name, rs in results.items()}

    class HiCacheStorage(ABC):
        """Stand-in mirroring sglang's ``HiCacheStorage`` ABC (hicache_storage.py @ 001067ff):
        same method names, parameters, defaults and return conventions."""

        def register_mem_pool_host(self, mem_pool_host):
            self.mem_pool_host = mem_pool_host

        def register_mem_host_pool_v2(self, host_pool, host_pool_name):
            if not hasattr(self, "registered_pools"):
                self.registered_pools = {}
            self.registered_pools[host_pool_name] = host_pool

        def batch_exists_v2(self, keys: List[str], pool_transfers=None, extra_info=None):
            raise NotImplementedError()

        def batch_get_v2(self, transfers, extra_info=None) -> dict:
            raise NotImplementedError()

        def batch_set_v2(self, transfers, extra_info=None) -> dict:
            raise NotImplementedError()

        def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info=None) -> List[bool]:
            raise NotImplementedError()

        def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info=None) -> List[bool]:
            raise NotImplementedError()

        @abstractmethod
        def get(self, key: str, target_location: Optional[Any] = None, target_sizes: Optional[Any] = None):
            pass

        @abstractmethod
        def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                      target_sizes: Optional[Any] = None):
            pass

        @abstractmethod
        def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
                target_sizes: Optional[Any] = None) -> bool:
            pass

        @abstractmethod
        def batch_set(self, keys: List[str], values: Optional[Any] = None, target_locations: Optional[Any] = None,
                      target_sizes: Optional[Any] = None) -> bool:
            pass

        @abstractmethod
        def exists(self, key: str) -> bool:
            pass

        def batch_exists(self, keys: List[str], extra_info=None) -> int:
            for i in range(len(keys)):
                if not self.exists(keys[i]):
                    return i
            return len(keys)

        def clear(self) -> None:
            pass

        def get_stats(self):
            return None
