"""Stand-ins for the objects vLLM hands a KV connector, with only the fields KvasirConnector reads.

vLLM cannot be installed here (no PyPI). These mirror vllm-project/vllm at commit 003df296:
``vllm/config/kv_transfer.py`` (KVTransferConfig: kv_role, kv_connector_extra_config, engine_id - a uuid when not
given - and get_from_extra_config), ``vllm/config`` (VllmConfig and its cache/model/parallel configs),
``vllm/v1/request.py`` (Request: request_id, prompt_token_ids, num_prompt_tokens, cache_salt, kv_transfer_params),
``vllm/v1/core/kv_cache_manager.py`` (KVCacheBlocks.get_block_ids -> tuple of per-group lists),
``vllm/v1/kv_cache_interface.py`` (KVCacheConfig(num_blocks, kv_cache_tensors, kv_cache_groups),
KVCacheGroupSpec(layer_names, kv_cache_spec, is_eagle_group), FullAttentionSpec, SlidingWindowSpec(sliding_window),
MambaSpec: the fields the connector reads),
``vllm/v1/core/sched/output.py`` (SchedulerOutput, NewRequestData, CachedRequestData) and
``vllm/forward_context.py`` (ForwardContext).
"""
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

BS = 4          # tokens per block
NUM_BLOCKS = 16  # blocks per layer's kv cache


@dataclass
class KVTransferConfig:
    kv_connector: str = "KvasirConnector"
    kv_connector_module_path: str = "kvasir.integrations.vllm"
    kv_role: str = "kv_both"
    kv_connector_extra_config: Dict[str, Any] = field(default_factory=dict)
    engine_id: Optional[str] = None
    kv_load_failure_policy: str = "fail"    # upstream: Literal["recompute", "fail"] = "fail"

    def __post_init__(self):
        if self.engine_id is None:
            self.engine_id = str(uuid.uuid4())

    def get_from_extra_config(self, key, default):
        return self.kv_connector_extra_config.get(key, default)


@dataclass
class CacheConfig:
    block_size: int = BS


@dataclass
class ModelConfig:
    model: str = "m"


@dataclass
class ParallelConfig:
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1


@dataclass
class VllmConfig:
    kv_transfer_config: KVTransferConfig
    cache_config: CacheConfig
    model_config: ModelConfig
    parallel_config: ParallelConfig


@dataclass
class FullAttentionSpec:
    block_size: int


@dataclass
class SlidingWindowSpec:
    block_size: int
    sliding_window: int


@dataclass
class MambaSpec:
    block_size: int


@dataclass
class KVCacheGroupSpec:
    layer_names: List[str]
    kv_cache_spec: Any
    is_eagle_group: bool = False


@dataclass
class KVCacheConfig:
    num_blocks: int = NUM_BLOCKS
    kv_cache_tensors: list = field(default_factory=list)
    kv_cache_groups: list = field(default_factory=list)


@dataclass
class Request:
    request_id: str
    prompt_token_ids: List[int]
    cache_salt: Optional[str] = None
    kv_transfer_params: Optional[Dict[str, Any]] = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


class KVCacheBlocks:
    """``ids``: a list (one kv-cache group) or a tuple of per-group lists (hybrid manager)."""

    def __init__(self, ids):
        self.groups = tuple(list(g) for g in ids) if isinstance(ids, tuple) else (list(ids),)

    def get_block_ids(self):
        return self.groups


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: List[int]
    block_ids: tuple
    num_computed_tokens: int


@dataclass
class CachedRequestData:
    req_ids: List[str] = field(default_factory=list)
    resumed_req_ids: set = field(default_factory=set)
    new_block_ids: list = field(default_factory=list)
    num_computed_tokens: List[int] = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: list = field(default_factory=list)
    scheduled_cached_reqs: CachedRequestData = field(default_factory=CachedRequestData)
    num_scheduled_tokens: Dict[str, int] = field(default_factory=dict)
    finished_req_ids: set = field(default_factory=set)


@dataclass
class ForwardContext:
    no_compile_layers: dict = field(default_factory=dict)
    attn_metadata: Any = None


class CountingStore:
    """Delegates to a KvStore, counting exists calls."""

    def __init__(self, store):
        self._store = store
        self.exists_calls = 0

    def batch_is_exist(self, keys):
        self.exists_calls += 1
        return self._store.batch_is_exist(keys)

    def is_exist(self, key):
        self.exists_calls += 1
        return self._store.is_exist(key)

    def __getattr__(self, name):
        return getattr(self._store, name)


def remembering(factory, close):
    """For a fixture that makes engines on demand: ``(make, close_all)``; ``make`` builds with ``factory`` and
    remembers, ``close_all`` closes everything made, with ``close``."""
    made = []

    def make(*args, **kw):
        thing = factory(*args, **kw)
        made.append(thing)
        return thing

    def close_all():
        for thing in made:
            close(thing)
    return make, close_all
