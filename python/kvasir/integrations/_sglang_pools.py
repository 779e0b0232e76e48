"""The v2 (hybrid / sidecar pool) half of the SGLang HiCache backend: ``batch_get_v2``,
``batch_set_v2`` and ``batch_exists_v2`` over the host pools registered with
``register_mem_host_pool_v2``. A mixin of :class:`kvasir.integrations.sglang.KvasirHiCacheStorage`
(it uses that class's key layout, page packing and store calls); see that module for the sglang
interfaces mirrored."""

import dataclasses
import logging
from enum import Enum
from typing import Any, List, Optional

import torch

from .. import errors as E
from ._sglang_compat import HiCacheStorageExtraInfo, PoolName, PoolTransferResult


logger = logging.getLogger(__name__)


def pool_name_str(name) -> str:
    return name.value if isinstance(name, Enum) else str(name)


def resolve_sidecars(transfers: List[Any]) -> List[Any]:
    """Each transfer, with a sidecar's (``indices_from_pool`` set, no host indices of its own) host
    indices -- and keys, if it has none -- taken from its source pool's transfer in the same call;
    None in place of a sidecar whose source is not there."""
    sources = {pool_name_str(t.name): t for t in transfers if t.host_indices is not None}
    out = []
    for t in transfers:
        src_name = getattr(t, "indices_from_pool", None)
        if t.host_indices is None and src_name is not None:
            src = sources.get(pool_name_str(src_name))
            if src is None:
                logger.warning("kvasir: sidecar pool %s needs the %s transfer in the same call for its host "
                               "indices; its pages fail", pool_name_str(t.name), pool_name_str(src_name))
                out.append(None)
                continue
            t = dataclasses.replace(t, host_indices=src.host_indices, keys=t.keys if t.keys is not None else src.keys)
        out.append(t)
    return out


class PoolTransfers:
    """v2 pool transfers for :class:`~kvasir.integrations.sglang.KvasirHiCacheStorage`."""

    def _pool_for(self, name):
        pool = self.registered_pools.get(name)
        if pool is None:
            for k, v in self.registered_pools.items():
                if pool_name_str(k) == pool_name_str(name):
                    pool = v
                    break
        if pool is None and pool_name_str(name) == "kv":
            pool = self.mem_pool_host
        if pool is None:
            raise ValueError(f"unregistered host pool {pool_name_str(name)!r} (register_mem_host_pool_v2 first)")
        return pool

    def _component_keys(self, keys: List[str], name, per_page: int) -> List[str]:
        pname = pool_name_str(name)
        if pname == "kv":
            return [k for key in keys for k in self._page_keys(key)]
        rank = self.mha_suffix if (pname == "mamba" or not self.is_mla_backend) else self.mla_suffix
        out = []
        for key in keys:
            base = self._tag(key)
            base = f"{base}_{rank}_{pname}" if rank else f"{base}__{pname}"
            out.extend([base] if per_page == 1 else [f"{base}_{j}" for j in range(per_page)])
        return out

    def _transfer_meta(self, transfer):
        pool = self._pool_for(transfer.name)
        keys = list(transfer.keys or [])
        ptrs, sizes = pool.get_page_buffer_meta(transfer.host_indices)
        ptrs, sizes = list(ptrs), list(sizes)
        if not keys:
            return keys, [], [], []
        if pool_name_str(transfer.name) == "kv":
            key_strs = self._component_keys(keys, transfer.name, 1)
        else:
            per_page = len(ptrs) // len(keys) if len(ptrs) % len(keys) == 0 else 1
            key_strs = self._component_keys(keys, transfer.name, max(per_page, 1))
        ptrs, sizes = self._pack(key_strs, ptrs, sizes)
        return keys, key_strs, ptrs, sizes

    def _ptrs_per_page(self, pool, transfer) -> int:
        """Buffers per page of ``pool`` (K and V for MHA page-first, one for MLA ...)."""
        n = len(transfer.keys or [])
        try:
            if transfer.host_indices is not None and n:
                ptrs, _ = pool.get_page_buffer_meta(transfer.host_indices)
                return max(1, len(ptrs) // n)
            ptrs, _ = pool.get_page_buffer_meta(torch.arange(int(getattr(pool, "page_size", 1) or 1)))
            return max(1, len(ptrs))
        except Exception:  # noqa: BLE001
            return 1

    def batch_get_v2(self, transfers: List[Any], extra_info: Optional[HiCacheStorageExtraInfo] = None) -> dict:
        """Reads every transfer's pages into its host pool: pool name -> per-page success list."""
        results = {}
        for orig, tr in zip(transfers, resolve_sidecars(transfers)):
            if tr is None:
                results[orig.name] = [False] * len(orig.keys or [])
                continue
            keys, key_strs, ptrs, sizes = self._transfer_meta(tr)
            res = self._get_into(key_strs, ptrs, sizes)
            ok = [r == self._total(s) for r, s in zip(res, sizes)]
            results[tr.name] = self._group(ok, len(keys))
        return results

    def batch_set_v2(self, transfers: List[Any], extra_info: Optional[HiCacheStorageExtraInfo] = None) -> dict:
        """Writes every transfer's pages from its host pool: pool name -> per-page success list. A transfer's keys are
        one request's pages in prefix order (sglang's hybrid cache controller); in a pool whose every page is needed
        (KV, an ``all_pages`` sidecar) they are stored as a chain (issue 17) continuing that pool's object of the last
        of ``extra_info.prefix_keys`` (no parent without them). A ``trailing_pages`` pool holds a state per page, each
        a restore point on its own: stored unlinked."""
        prefix = getattr(extra_info, "prefix_keys", None) if extra_info is not None else None
        results = {}
        for orig, tr in zip(transfers, resolve_sidecars(transfers)):
            if tr is None:
                results[orig.name] = [False] * len(orig.keys or [])
                continue
            n = len(tr.keys or [])
            if self.skip_writes:
                results[tr.name] = [True] * n
                continue
            keys, key_strs, ptrs, sizes = self._transfer_meta(tr)
            chain = str(getattr(tr.hit_policy, "value", tr.hit_policy)) != "trailing_pages"
            parent = None
            if chain and prefix and keys:
                per_page = 1 if pool_name_str(tr.name) == "kv" else len(key_strs) // len(keys)
                parent = self._component_keys(list(prefix[-1:]), tr.name, per_page)[-1]
            res = self._put_missing(key_strs, ptrs, sizes, chain=chain, parent=parent)
            results[tr.name] = self._group([r == E.OK for r in res], len(keys))
        return results

    def batch_exists_v2(self, keys: List[str], pool_transfers: Optional[List[Any]] = None,
                        extra_info: Optional[HiCacheStorageExtraInfo] = None):
        """Usable KV prefix given every extra pool's hit policy (all_pages / trailing_pages)."""
        if self.mem_pool_host is not None and getattr(self.mem_pool_host, "kv_buffer", 0) is None:
            kv_pages = len(keys)
        else:
            query = [k for key in keys for k in self._page_keys(key)]
            m = len(self._page_keys("x"))
            exist = self._exist(query)
            kv_pages = next((i // m for i, e in enumerate(exist) if e != 1), len(keys))
        hits = {PoolName.KV: kv_pages} if kv_pages else {}
        restorable = list(range(1, kv_pages + 1))
        for tr in pool_transfers or []:
            if not restorable:
                break
            pool = self._pool_for(tr.name)
            n_pool_pages = len(tr.keys) if tr.keys else 0
            per_page = self._ptrs_per_page(pool, tr)
            comp = self._component_keys(keys[:kv_pages], tr.name, per_page)
            ex = self._exist(comp)
            page_ok = [all(e == 1 for e in ex[i * per_page:(i + 1) * per_page]) for i in range(kv_pages)]
            policy = str(getattr(tr.hit_policy, "value", tr.hit_policy))
            if policy == "trailing_pages":
                trailing = max(1, n_pool_pages or 1)
                ok_points = {p for p in range(1, kv_pages + 1)
                             if all(page_ok[max(0, p - trailing):p])}
            else:
                boundary = page_ok.index(False) if False in page_ok else kv_pages
                ok_points = set(range(1, boundary + 1))
            if ok_points:
                hits[tr.name] = max(ok_points)
            restorable = [p for p in restorable if p in ok_points]
        final = restorable[-1] if restorable else 0
        return _make_pool_result(final, hits, restorable)


def _make_pool_result(kv_hit_pages: int, hits: dict, restorable: List[int]):
    """Builds sglang's PoolTransferResult; newer trees add a third field (restorable prefixes)."""
    try:
        fields = [f.name for f in dataclasses.fields(PoolTransferResult)]
    except TypeError:
        fields = []
    if len(fields) >= 3:
        return PoolTransferResult(kv_hit_pages, hits, restorable)
    return PoolTransferResult(kv_hit_pages, hits)
