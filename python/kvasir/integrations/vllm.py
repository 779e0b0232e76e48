"""vLLM v1 KV connector over a Kvasir node: ``KvasirConnector``.

Launch (see docs/connectors.md)::

    vllm serve MODEL --kv-transfer-config '{"kv_connector": "KvasirConnector",
        "kv_connector_module_path": "kvasir.integrations.vllm", "kv_role": "kv_both",
        "kv_connector_extra_config": {"kvasir_servers": "127.0.0.1:7380"}}'

Interface mirrored
------------------
``vllm/distributed/kv_transfer/kv_connector/v1/base.py`` of vllm-project/vllm at commit
``003df2961dd8830c317a61f9745ccd557da9fa06`` (``KVConnectorBase_V1``, ``KVConnectorRole``,
``KVConnectorMetadata``), with ``example_connector.py`` (formerly ``shared_storage_connector.py``,
commit ``00231834dc62bb1127ec5c8f2e6762c87d2f477e``) as the reference for the scheduler-output
fields used (``scheduled_new_reqs[i].req_id / prompt_token_ids / block_ids / num_computed_tokens``,
``scheduled_cached_reqs.req_ids / new_block_ids / num_computed_tokens / resumed_req_ids``
(older: ``resumed_from_preemption``), ``num_scheduled_tokens``, ``finished_req_ids``). When vLLM
is importable the connector subclasses the real base class; otherwise the stand-ins of _vllm_standin.py, with
the same names and signatures, are used (so the module imports, and is testable, without vLLM).

What is stored
--------------
Only full blocks of the **prompt** are cached. In the default layout (``kvasir_layout`` ``block``) a block's
value is the block's slice of every registered layer's kv-cache tensor, concatenated in layer registration order (for a FlashAttention
``[2, num_blocks, block_size, heads, head_dim]`` layer that is two pieces, K then V; for a
``[num_blocks, ...]`` layer one piece). Values are written with ``batch_put_from_multi_buffers``
straight from the tensors' memory (gather, no joining copy) and read with
``batch_get_into_multi_buffers`` straight into them (scatter).

Keys: ``kvasir/vllm/v1/{model}/tp{rank}of{size}/pp{rank}of{size}/{block_hash}``; a key over the
node's limit replaces ``{model}`` with ``sha256(model)[:32]``.

Block hash (chained, hex SHA-256)::

    h[-1] = sha256(b"kvasir-vllm-v1" + cache_salt.encode())   # cache_salt: request's, else ""
    h[i]  = sha256(h[i-1] + pack("<{block_size}q", *tokens[i*bs:(i+1)*bs]))   # raw 32-byte digests

so a block's key names its whole prefix, and the scheduler's hit count is the number of leading
blocks whose keys exist for **every** (tp, pp) rank (one ``batch_is_exist`` call per request).

Hybrid KV cache manager (``SupportsHMA``, base.py of the same tree: ``request_finished_all_groups(request,
block_ids: tuple[list[int], ...])``): every kv-cache group of ``kv_cache_config.kv_cache_groups`` is saved and
loaded, a group after the first under ``.../pp{r}of{n}/g{group}/{block_hash}``; which blocks a sliding-window group
needs, and which group kinds are refused, is in _vllm_groups.py.

Loads are asynchronous within the forward pass, per layer group (``kvasir_layout``; _vllm_layers.py): vLLM sees them
as synchronous (``get_num_new_matched_tokens`` answers ``load_async=False``), ``start_load_kv`` queues them and
returns, ``wait_for_layer_load(layer)`` waits for the group holding that layer, and ``wait_for_save`` (the end of the
pass) settles them all. A missing value (any layer group's) or one of the wrong length makes its block a load error,
reported by ``get_block_ids_with_load_errors`` in that pass (vLLM then recomputes the request from the first failed
block, with ``kv_load_failure_policy`` "recompute"); ``last_loaded_block_ids`` lists, per request, the block ids
loaded before the first failure. Saves of host kv caches start per layer group from ``save_kv_layer`` (once a
group's last layer is written) and ``wait_for_save`` waits for them; device kv caches are saved in ``wait_for_save``.

When the node runs on this host (the store's shared-memory transport), blocks move straight
between its arena and the kv caches: ``batch_get_into_multi_buffers_submit_local`` and
``batch_put_from_multi_buffers_local``, one DMA per block slice for CUDA tensors (torch with CUDA),
one memcpy for CPU tensors (numpy needed). Otherwise — a remote node, or that path refused — CPU
tensors are read and written in place over TCP, and CUDA tensors go through a CPU staging tensor
(one copy each way).

Configuration (``kv_connector_extra_config``; environment used as the fallback, see KvStore):
``kvasir_servers``, ``kvasir_auth_key``, ``kvasir_request_timeout``, ``kvasir_model_name`` (default
``model_config.model``), ``kvasir_tp_rank`` / ``kvasir_pp_rank`` (default: vLLM's parallel state),
``kvasir_num_blocks`` (to locate the block dimension; default ``kv_cache_config.num_blocks``),
``kvasir_force_staging`` (use the CPU staging path, never the local or in-place ones; for tests),
``kvasir_layout`` (``block``, the default: one value per block, every layer; ``layer`` / ``layerN``: one value per
block and group of N layers under the block's key plus ``/L{first}-{last}``, so the forward pass starts before later
layers are in: bench/ttft.py measured ``layer8`` overlapped at 10.5x against 8.6x for whole blocks at 16k tokens on
an H100; the layouts are separate key spaces), ``kvasir_num_layers`` (the layer count a layered layout's scheduler
uses when vLLM gives no ``kv_cache_config``), ``kvasir_async_load`` (default true; false waits for every load in
``start_load_kv`` and lets vLLM use full CUDA graphs: ``requires_piecewise_for_cudagraph``), ``kvasir_load_timeout``
(seconds a wait for one layer group's transfer may take before its blocks count as failed; default 4 x
``kvasir_request_timeout``, else 120).

Disaggregated prefill (``kvasir_pd``: true; module ``_vllm_pd``): a ``kv_producer`` holds a request marked
``do_remote_decode`` under a lease and returns NixlConnector-style kv_transfer_params from
``request_finished``; a ``kv_consumer`` pulls those blocks from the producer's kv caches through the transfer
engine in ``start_load_kv`` and sends DONE (the producer's ``get_finished`` then lets vLLM free them), falling
back to the store when the producer is gone. Keys: ``kvasir_pd_interface``, ``kvasir_pd_port``,
``kvasir_pd_lanes``, ``kvasir_pd_lease_seconds``, ``kvasir_pd_timeout``; ``kv_transfer_config.engine_id``
names the producer (docs/connectors.md).
"""

import hashlib
import importlib.util
import logging
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


logger = logging.getLogger("kvasir.vllm")

if importlib.util.find_spec("vllm") is not None:   # the real interface, when vLLM is installed
    try:
        from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # type: ignore
            KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole)
        try:
            from vllm.distributed.kv_transfer.kv_connector.v1.base import SupportsHMA, supports_hma  # type: ignore
        except ImportError:  # a vLLM from before the hybrid manager's connector interface
            from ._vllm_standin import SupportsHMA, supports_hma  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure of a present vLLM is the user's to see
        raise ImportError(f"kvasir: vLLM is installed but its v1 KV connector interface does not import ({e!r}); "
                          "repair or upgrade vLLM (or uninstall it to use kvasir without it)") from e
    HAVE_VLLM = True
else:  # vLLM absent: the documented stand-ins
    HAVE_VLLM = False

    from ._vllm_standin import (KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole,  # noqa: F401
                                SupportsHMA, supports_hma)
from ._vllm_groups import groups_of, leading_in_all, per_group, restorable_blocks
from ._vllm_layers import suffixes
from ._vllm_worker import Worker, cfg_get

__all__ = ["KvasirConnector", "KvasirConnectorMetadata", "ReqMeta", "block_key", "chained_block_hashes", "HAVE_VLLM",
           "SupportsHMA", "supports_hma"]

_HASH_SEED = b"kvasir-vllm-v1"


def chained_block_hashes(token_ids, block_size: int, salt: str = "") -> List[bytes]:
    """32-byte SHA-256 digests of the full blocks of ``token_ids``, each chained on the previous
    one: ``h[i] = sha256(h[i-1] + int64-LE(tokens of block i))``, ``h[-1] = sha256(seed + salt)``."""
    prev = hashlib.sha256(_HASH_SEED + (salt or "").encode("utf-8")).digest()
    out = []
    for i in range(len(token_ids) // block_size):
        chunk = [int(t) for t in token_ids[i * block_size:(i + 1) * block_size]]
        prev = hashlib.sha256(prev + struct.pack(f"<{block_size}q", *chunk)).digest()
        out.append(prev)
    return out


def block_key(model: str, block_hash: str, tp=(0, 1), pp=(0, 1), max_key: int = 512, group: int = 0,
              suffix: str = "") -> str:
    """The connector's key of a block: ``kvasir/vllm/v1/{model}/tp{rank}of{size}/pp{rank}of{size}/{hex hash}``
    (``tp``, ``pp``: (rank, size); kv-cache group ``group`` > 0 adds ``g{group}/`` before the hash; ``suffix``, a layer
    group's ``/L{first}-{last}`` in the layered layouts, follows it), with ``sha256(model)[:32]`` for the model when
    the key would pass ``max_key`` bytes. Module-level so that tools outside vLLM (bench/ttft.py) make the same keys."""
    tail = f"/tp{tp[0]}of{tp[1]}/pp{pp[0]}of{pp[1]}/{f'g{group}/' if group else ''}{block_hash}{suffix}"
    key = f"kvasir/vllm/v1/{model}{tail}"
    if len(key.encode("utf-8")) > max_key:
        key = f"kvasir/vllm/v1/{hashlib.sha256(model.encode('utf-8')).hexdigest()[:32]}{tail}"
    return key


@dataclass
class ReqMeta:
    """Per request, this step: (block id, hex block hash) pairs of kv-cache group 0 to load and to save, and
    (group, block id, hex hash) triples of the other groups (hybrid manager); for a disaggregated decode, the
    producer's engine id, its request id and its block id for each block to load."""
    req_id: str
    load: List[Tuple[int, str]] = field(default_factory=list)
    save: List[Tuple[int, str]] = field(default_factory=list)
    load_groups: List[Tuple[int, int, str]] = field(default_factory=list)
    save_groups: List[Tuple[int, int, str]] = field(default_factory=list)
    remote_engine_id: Optional[str] = None
    remote_request_id: Optional[str] = None
    remote_block_ids: List[int] = field(default_factory=list)
    # ``save`` is a run of the prompt's consecutive blocks: the worker stores it as one chain (docs/protocol.md § PUT
    # chains), continuing ``save_parent`` (hex hash of the block before the run; "" for a run from the first block)
    save_chain: bool = False
    save_parent: str = ""


@dataclass
class KvasirConnectorMetadata(KVConnectorMetadata):
    requests: List[ReqMeta] = field(default_factory=list)
    reqs_to_send: List[str] = field(default_factory=list)   # producer: blocks held for a decoder to pull


@dataclass
class _Tracked:
    """Scheduler-side state of one request."""
    hashes: List[str]               # hex hashes of the prompt's full blocks
    num_prompt_tokens: int
    present: List[List[bool]]       # per kv-cache group, per block: stored for every (tp, pp) rank
    num_computed_tokens: int = 0    # what vLLM had locally when it asked
    load_blocks: int = 0            # blocks [local, local + load_blocks) to load
    block_ids: List[List[int]] = field(default_factory=list)   # per kv-cache group
    saved_upto: int = 0             # blocks [0, saved_upto) are stored or planned
    load_planned: bool = False
    remote: Optional[dict] = None   # disaggregated decode: the producer's kv_transfer_params
    scheduled: bool = False         # allocated once: a later lookup is a re-queued (preempted) request

    @property
    def stored_blocks(self) -> int:
        """Leading blocks every group already holds in Kvasir (not written again)."""
        return leading_in_all(self.present)


def _first_group(block_ids) -> List[int]:
    """vLLM passes block ids per kv-cache group (tuple of lists); the connector uses group 0."""
    if block_ids is None:
        return []
    if len(block_ids) and isinstance(block_ids[0], (list, tuple)):
        return list(block_ids[0])
    return list(block_ids)


class KvasirConnector(Worker, KVConnectorBase_V1, SupportsHMA):
    """vLLM v1 KV connector storing prompt KV blocks in Kvasir (see the module docstring). It saves and loads
    every kv-cache group (full-attention and sliding-window; _vllm_groups.py), so it declares ``SupportsHMA``.

    ``store``: a ready :class:`kvasir.KvStore` (tests, embedding); by default one is opened from
    ``kv_connector_extra_config`` / the ``KVASIR_*`` environment. ``shutdown`` closes only a store the connector
    opened; a given one stays open (the kv caches' buffers registered in it are unregistered)."""

    def __init__(self, vllm_config, role, kv_cache_config=None, *, store=None):
        super().__init__(vllm_config, role, kv_cache_config)
        ktc = self._kv_transfer_config
        self._block_size = int(vllm_config.cache_config.block_size)
        self._groups = groups_of(kv_cache_config, self._block_size)
        pc = getattr(vllm_config, "parallel_config", None)
        self._tp_size = int(getattr(pc, "tensor_parallel_size", 1) or 1)
        self._pp_size = int(getattr(pc, "pipeline_parallel_size", 1) or 1)
        model = cfg_get(ktc, "kvasir_model_name") or getattr(getattr(vllm_config, "model_config", None), "model", None)
        self._model = str(model or "default")
        kv_role = str(getattr(ktc, "kv_role", "kv_both") or "kv_both")
        self._do_save = kv_role in ("kv_producer", "kv_both")
        self._do_load = kv_role in ("kv_consumer", "kv_both")
        self.failure_policy = getattr(ktc, "kv_load_failure_policy", None)
        if self._do_load and self.failure_policy == "fail" and role == KVConnectorRole.SCHEDULER:
            logger.warning("kvasir: kv_load_failure_policy is 'fail', so a block evicted between lookup and load fails "
                           "the request; add \"kv_load_failure_policy\": \"recompute\" to --kv-transfer-config to have "
                           "vLLM recompute such blocks")
        self._owns_store = store is None   # shutdown closes only a store the connector opened
        if store is None:
            from kvasir import KvStore  # noqa: PLC0415
            timeout = cfg_get(ktc, "kvasir_request_timeout")
            store = KvStore(cfg_get(ktc, "kvasir_servers"), cfg_get(ktc, "kvasir_auth_key"),
                            request_timeout=float(timeout) if timeout else None)
        self._store = store
        self._max_key = min(int(getattr(getattr(store, "hello", None), "max_key_bytes", 512) or 512), 512)
        # scheduler side
        self._tracked: Dict[str, _Tracked] = {}
        # worker side
        self._tp_rank, self._pp_rank = self._ranks()
        self._init_worker(ktc)
        # per kv-cache group, the key suffixes of a block's values (one, empty, in the block layout)
        self._suffixes = [suffixes(self._layer_count(kv_cache_config, g), self._per_value) if self._per_value else [""]
                          for g in self._groups]
        self.stats = {"exists_calls": 0, "blocks_hit": 0, "blocks_loaded": 0, "blocks_load_failed": 0,
                      "blocks_saved": 0, "blocks_save_failed": 0, "blocks_loaded_local": 0, "blocks_saved_local": 0,
                      "blocks_pulled": 0, "pulls_failed": 0}
        # disaggregated prefill -> decode through the transfer engine (kvasir_pd)
        self._pd = str(cfg_get(ktc, "kvasir_pd", "")).lower() in ("1", "true", "yes", "transfer")
        self._engine_id = str(getattr(ktc, "engine_id", None) or cfg_get(ktc, "kvasir_engine_id") or "")
        if self._pd and not self._engine_id:
            raise ValueError("kvasir: kvasir_pd needs kv_transfer_config.engine_id (vLLM sets it) or kvasir_engine_id")
        if self._pd and len(self._groups) > 1:
            raise ValueError("kvasir: kvasir_pd hands over one kv-cache group; start vLLM with "
                             "--disable-hybrid-kv-cache-manager or leave kvasir_pd off (the store path serves every group)")
        self._pd_lease = float(cfg_get(ktc, "kvasir_pd_lease_seconds", 120.0))
        self._pd_timeout = float(cfg_get(ktc, "kvasir_pd_timeout", 30.0))
        self._reqs_to_send: List[str] = []
        self._pd_producer = None
        self._pd_consumer = None

    @property
    def requires_kv_delivery(self) -> bool:
        """A best-effort cache: a dropped save is only a future miss (base: is_kv_producer)."""
        return False

    # ---------------------------------------------------------------- keys

    def _ranks(self) -> Tuple[int, int]:
        ktc = self._kv_transfer_config
        tp, pp = cfg_get(ktc, "kvasir_tp_rank"), cfg_get(ktc, "kvasir_pp_rank")
        if self._role == KVConnectorRole.WORKER and (tp is None or pp is None) and HAVE_VLLM:
            try:
                from vllm.distributed.parallel_state import get_pp_group, get_tensor_model_parallel_rank  # noqa: PLC0415
                tp = get_tensor_model_parallel_rank() if tp is None else tp
                pp = get_pp_group().rank_in_group if pp is None else pp
            except Exception:  # noqa: BLE001 - parallel state not initialised
                pass
        return int(tp or 0), int(pp or 0)

    def block_key(self, block_hash: str, tp_rank: Optional[int] = None, pp_rank: Optional[int] = None,
                  group: int = 0, suffix: str = "") -> str:
        """The Kvasir key of a block (this worker's ranks unless given; kv-cache group ``group`` > 0 adds ``/g{group}``;
        ``suffix``: a layer group's, in the layered layouts)."""
        tp = self._tp_rank if tp_rank is None else tp_rank
        pp = self._pp_rank if pp_rank is None else pp_rank
        return block_key(self._model, block_hash, (tp, self._tp_size), (pp, self._pp_size), self._max_key, group, suffix)

    def _layer_count(self, kv_cache_config, group) -> int:
        """Layers of kv-cache ``group`` (a ``_vllm_groups.Group``), for the scheduler's keys in a layered layout:
        ``kv_cache_config``'s layer names, else ``kvasir_num_layers``."""
        if group.layer_names is not None:
            return len(group.layer_names)
        specs = list(getattr(kv_cache_config, "kv_cache_groups", None) or [])
        if specs and getattr(specs[0], "layer_names", None):
            return len(specs[0].layer_names)
        n = cfg_get(self._kv_transfer_config, "kvasir_num_layers")
        if n is None or int(n) < 1:
            raise ValueError("kvasir: kvasir_layout layerN needs the model's layer count: vLLM passes it in "
                             "kv_cache_config; without one set kvasir_num_layers (or use kvasir_layout block)")
        return int(n)

    # ---------------------------------------------------------------- scheduler side

    @staticmethod
    def _prompt(request) -> List[int]:
        tokens = getattr(request, "prompt_token_ids", None)
        if tokens is None:
            n = getattr(request, "num_prompt_tokens", 0)
            tokens = list(getattr(request, "all_token_ids", []))[:n]
        return list(tokens)

    def _remote_prefill(self, request) -> Optional[dict]:
        """The producer's kv_transfer_params when this request's prefill ran on another engine (kvasir_pd)."""
        params = getattr(request, "kv_transfer_params", None)
        if not (self._pd and self._do_load and isinstance(params, dict) and params.get("do_remote_prefill")):
            return None
        if not params.get("remote_engine_id") or not params.get("remote_block_ids"):
            return None
        return params

    def get_num_new_matched_tokens(self, request, num_computed_tokens: int) -> Tuple[int, bool]:
        """Block-aligned prefix of the prompt whose blocks all (tp, pp) ranks stored, beyond
        ``num_computed_tokens``; at least one prompt token is always left to compute. One
        ``batch_is_exist`` per request while it waits (vLLM may ask again each step); a request asked
        for again after it was scheduled (preempted, re-queued) is looked up afresh.
        A disaggregated decode (``do_remote_prefill`` from a kvasir_pd producer) matches the producer's
        full prompt blocks instead: they are pulled from it, or read from the store if it is gone."""
        req_id = request.request_id
        tracked = self._tracked.get(req_id)
        remote = self._remote_prefill(request) if tracked is None else None
        if remote is not None:
            tokens = self._prompt(request)
            hashes = [h.hex() for h in chained_block_hashes(tokens, self._block_size,
                                                            getattr(request, "cache_salt", None) or "")]
            full = min(len(hashes), len(_first_group(remote["remote_block_ids"])))
            tracked = _Tracked(hashes=hashes, num_prompt_tokens=len(tokens), present=[[True] * full], remote=dict(remote))
            self._tracked[req_id] = tracked
        if tracked is None:
            tokens = self._prompt(request)
            hashes = [h.hex() for h in chained_block_hashes(tokens, self._block_size,
                                                            getattr(request, "cache_salt", None) or "")]
            tracked = _Tracked(hashes=hashes, num_prompt_tokens=len(tokens), present=self._stored_prefix(req_id, hashes))
            self._tracked[req_id] = tracked
        elif tracked.scheduled and tracked.remote is None:
            # asked again after it was scheduled: preempted and re-queued; blocks may have been stored since
            tracked.present = self._stored_prefix(req_id, tracked.hashes)
            tracked.scheduled = False
        tracked.num_computed_tokens = num_computed_tokens
        if not self._do_load:
            return 0, False
        # never the whole prompt: at least one token remains to compute
        usable = restorable_blocks(self._groups if tracked.remote is None else self._groups[:1], tracked.present,
                                   max(tracked.num_prompt_tokens - 1, 0) // self._block_size, self._block_size)
        hit_tokens = usable * self._block_size
        self.stats["blocks_hit"] = usable
        return max(0, hit_tokens - num_computed_tokens), False

    def _stored_prefix(self, req_id: str, hashes: List[str]) -> List[List[bool]]:
        """Per kv-cache group, per block of ``hashes``: every value of it (each layer group's, in a layered layout)
        stored by every (tp, pp) rank. One ``batch_is_exist``."""
        if not hashes or not (self._do_load or self._do_save):
            return [[] for _ in self._groups]
        ranks = [(t, p) for p in range(self._pp_size) for t in range(self._tp_size)]
        spans, keys = [], []   # per (group, block): its keys' [start, end) in ``keys``
        for g in self._groups:
            for h in hashes:
                start = len(keys)
                keys += [self.block_key(h, t, p, g.index, sfx) for sfx in self._suffixes[g.index] for (t, p) in ranks]
                spans.append((start, len(keys)))
        self.stats["exists_calls"] += 1
        try:
            found = self._store.batch_is_exist(keys)
        except Exception as ex:  # noqa: BLE001 - a cache must never fail the request
            logger.warning("kvasir: exists failed for %s: %s", req_id, ex)
            return [[False] * len(hashes) for _ in self._groups]
        nb = len(hashes)
        return [[all(f == 1 for f in found[a:b]) for a, b in spans[gi * nb:(gi + 1) * nb]] for gi in range(len(self._groups))]

    def update_state_after_alloc(self, request, blocks, num_external_tokens: int):
        tracked = self._tracked.get(request.request_id)
        if tracked is None:
            return
        tracked.scheduled = True
        ids = []
        if blocks is not None and hasattr(blocks, "get_block_ids"):
            ids = per_group(blocks.get_block_ids(), len(self._groups))
        if any(ids):
            tracked.block_ids = ids
        if num_external_tokens > 0:
            tracked.load_blocks = num_external_tokens // self._block_size
            tracked.load_planned = True
            params = getattr(request, "kv_transfer_params", None)
            if tracked.remote is not None and isinstance(params, dict):
                params["do_remote_prefill"] = False   # as vLLM's connectors do: a re-queued request reads the store

    def _plan(self, meta: KvasirConnectorMetadata, req_id: str, tracked: _Tracked, computed_after: int) -> None:
        req = ReqMeta(req_id)
        group_ids = per_group(tracked.block_ids, len(self._groups))
        if tracked.load_planned:
            start = tracked.num_computed_tokens // self._block_size
            end = start + tracked.load_blocks
            remote_ids = _first_group(tracked.remote["remote_block_ids"]) if tracked.remote else []
            for g, ids in zip(self._groups, group_ids):
                for i in range(max(start, g.first_needed(end, self._block_size)), end):
                    if i >= len(ids) or i >= len(tracked.hashes) or g.skips(ids[i]):
                        continue
                    if g.index:
                        req.load_groups.append((g.index, ids[i], tracked.hashes[i]))
                        continue
                    req.load.append((ids[i], tracked.hashes[i]))
                    if remote_ids:
                        req.remote_block_ids.append(int(remote_ids[i]))
            if tracked.remote is not None:
                req.remote_engine_id = str(tracked.remote["remote_engine_id"])
                req.remote_request_id = str(tracked.remote.get("remote_request_id") or req_id)
                tracked.remote = None
            tracked.load_planned = False
        if self._do_save:
            first = max(tracked.saved_upto, tracked.stored_blocks)
            end = min(len(tracked.hashes), computed_after // self._block_size, *(len(ids) for ids in group_ids))
            for g, ids in zip(self._groups, group_ids):
                for i in range(first, end):
                    if g.skips(ids[i]):
                        continue
                    if g.index:
                        req.save_groups.append((g.index, ids[i], tracked.hashes[i]))
                    else:
                        req.save.append((ids[i], tracked.hashes[i]))
            if req.save and len(req.save) == end - first:   # every block of the run: it is a chain
                req.save_chain = True
                req.save_parent = tracked.hashes[first - 1] if first > 0 else ""
            tracked.saved_upto = max(tracked.saved_upto, end)
        if req.load or req.save or req.load_groups or req.save_groups:
            meta.requests.append(req)

    def build_connector_meta(self, scheduler_output) -> KvasirConnectorMetadata:
        meta = KvasirConnectorMetadata()
        scheduled = getattr(scheduler_output, "num_scheduled_tokens", {}) or {}
        for new_req in getattr(scheduler_output, "scheduled_new_reqs", []) or []:
            tracked = self._tracked.get(new_req.req_id)
            if tracked is None:
                continue
            ids = per_group(new_req.block_ids, len(self._groups))
            if any(ids):
                tracked.block_ids = ids
            computed = getattr(new_req, "num_computed_tokens", tracked.num_computed_tokens)
            self._plan(meta, new_req.req_id, tracked, computed + scheduled.get(new_req.req_id, 0))
        cached = getattr(scheduler_output, "scheduled_cached_reqs", None)
        if cached is not None:
            resumed_ids = getattr(cached, "resumed_req_ids", None)
            resumed_flags = getattr(cached, "resumed_from_preemption", None)
            for i, req_id in enumerate(getattr(cached, "req_ids", []) or []):
                tracked = self._tracked.get(req_id)
                if tracked is None:
                    continue
                resumed = (req_id in resumed_ids) if resumed_ids is not None else \
                    bool(resumed_flags[i]) if resumed_flags is not None else False
                new_ids = per_group(cached.new_block_ids[i] if cached.new_block_ids else None, len(self._groups))
                old_ids = per_group(tracked.block_ids, len(self._groups))
                tracked.block_ids = new_ids if resumed else [o + n for o, n in zip(old_ids, new_ids)]
                self._plan(meta, req_id, tracked, cached.num_computed_tokens[i] + scheduled.get(req_id, 0))
        for req_id in getattr(scheduler_output, "finished_req_ids", ()) or ():
            self._tracked.pop(req_id, None)
        meta.reqs_to_send, self._reqs_to_send = self._reqs_to_send, []
        return meta

    def request_finished(self, request, block_ids) -> Tuple[bool, Optional[dict]]:
        """A kvasir_pd producer keeps the full prompt blocks of a request marked ``do_remote_decode`` for a
        decoder to pull (vLLM delays their free until ``get_finished`` reports the request) and returns the
        kv_transfer_params the decoder needs, with the field names of vLLM's NixlConnector."""
        self._tracked.pop(request.request_id, None)
        params = getattr(request, "kv_transfer_params", None)
        if not (self._pd and self._do_save and isinstance(params, dict) and params.get("do_remote_decode")):
            return False, None
        num_prompt = getattr(request, "num_prompt_tokens", None) or len(self._prompt(request))
        held = _first_group(block_ids)[:int(num_prompt) // self._block_size]
        if held:
            self._reqs_to_send.append(request.request_id)
        return bool(held), dict(do_remote_prefill=True, do_remote_decode=False, remote_block_ids=held,
                                remote_engine_id=self._engine_id, remote_request_id=request.request_id,
                                tp_size=self._tp_size)

    def request_finished_all_groups(self, request, block_ids) -> Tuple[bool, Optional[dict]]:
        """``SupportsHMA``: the scheduler calls this, with one block-id list per kv-cache group, instead of
        ``request_finished`` when the hybrid manager is on (saves happen per step, so nothing is held here)."""
        return self.request_finished(request, block_ids)
