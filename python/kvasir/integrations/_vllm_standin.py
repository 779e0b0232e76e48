"""Stand-ins for vLLM's v1 KV connector interface, used by :mod:`kvasir.integrations.vllm` when vLLM is not installed
(so the connector imports, and is testable, without it). They mirror
``vllm/distributed/kv_transfer/kv_connector/v1/base.py`` of vllm-project/vllm at commit
``003df2961dd8830c317a61f9745ccd557da9fa06``: the same names, members and method signatures."""

import enum
from abc import ABC, abstractmethod


class KVConnectorRole(enum.Enum):
    """Stand-in for vllm...v1.base.KVConnectorRole (same members and values)."""
    SCHEDULER = 0
    WORKER = 1

class KVConnectorHandshakeMetadata(ABC):  # noqa: B024
    """Stand-in for vllm...v1.base.KVConnectorHandshakeMetadata: out-of-band handshake data between P/D workers."""

class KVConnectorMetadata(ABC):  # noqa: B024
    """Stand-in for vllm...v1.base.KVConnectorMetadata: scheduler -> worker metadata."""

class KVConnectorWorkerMetadata(ABC):
    """Stand-in for vllm...v1.base.KVConnectorWorkerMetadata: worker -> scheduler metadata, one per worker and step,
    combined with ``aggregate``."""

    @abstractmethod
    def aggregate(self, other): ...

class KVConnectorBase_V1(ABC):
    """Stand-in for vllm...v1.base.KVConnectorBase_V1 (file vllm/distributed/kv_transfer/kv_connector/v1/base.py,
    commit 003df296): the constructor, the metadata plumbing, every default method with the real signature and
    a neutral answer, and the abstract methods. Keeping all of them means a connector method that overrides
    or calls one is checked against upstream's names even without vLLM."""

    def __init__(self, vllm_config, role, kv_cache_config=None):
        self._connector_metadata = None
        self._vllm_config = vllm_config
        if vllm_config.kv_transfer_config is None:
            raise ValueError("kv_transfer_config must be set for KVConnectorBase_V1")
        self._kv_transfer_config = vllm_config.kv_transfer_config
        self._kv_cache_config = kv_cache_config
        self._role = role
        self.use_eagle_prefix_cache_hashing = False

    @property
    def prefer_cross_layer_blocks(self) -> bool:
        return False

    @property
    def supports_eagle_prefix_cache_hashing(self) -> bool:
        return False

    @property
    def requires_kv_delivery(self) -> bool:
        return getattr(self._kv_transfer_config, "kv_role", None) in ("kv_producer", "kv_both")

    def set_eagle_prefix_cache_hashing(self, enabled: bool) -> None:
        self.use_eagle_prefix_cache_hashing = enabled

    @property
    def role(self):
        return self._role

    # worker side
    def bind_connector_metadata(self, connector_metadata) -> None:
        self._connector_metadata = connector_metadata

    def clear_connector_metadata(self) -> None:
        self._connector_metadata = None

    def _get_connector_metadata(self):
        assert self._connector_metadata is not None
        return self._connector_metadata

    def has_connector_metadata(self) -> bool:
        return self._connector_metadata is not None

    def register_kv_caches(self, kv_caches):
        return

    def register_cross_layers_kv_cache(self, kv_cache, attn_backend):
        return

    def set_host_xfer_buffer_ops(self, copy_operation):
        return

    def handle_preemptions(self, kv_connector_metadata):
        return

    # The per-layer hooks, as upstream documents them: start_load_kv "starts loading ... before the forward pass to
    # enable async loading during model execution"; wait_for_layer_load "blocks until the KV for a specific layer is
    # loaded", called from within the attention layer; save_kv_layer "starts saving a layer ... from within the
    # attention layer"; wait_for_save "blocks until all the save operations is done", as the forward context exits.
    @abstractmethod
    def start_load_kv(self, forward_context, **kwargs) -> None: ...

    @abstractmethod
    def wait_for_layer_load(self, layer_name: str) -> None: ...

    @abstractmethod
    def save_kv_layer(self, layer_name: str, kv_layer, attn_metadata, **kwargs) -> None: ...

    @abstractmethod
    def wait_for_save(self): ...

    def get_finished(self, finished_req_ids):
        return None, None

    def get_block_ids_with_load_errors(self):
        return set()

    def shutdown(self):
        return None

    def get_kv_connector_stats(self):
        return None

    def get_kv_connector_kv_cache_events(self):
        return None

    def get_handshake_metadata(self):
        return None

    def build_connector_worker_meta(self):
        return None

    # scheduler side
    def bind_gpu_block_pool(self, gpu_block_pool) -> None:
        return

    @abstractmethod
    def get_num_new_matched_tokens(self, request, num_computed_tokens: int): ...

    @abstractmethod
    def update_state_after_alloc(self, request, blocks, num_external_tokens: int): ...

    @abstractmethod
    def build_connector_meta(self, scheduler_output): ...

    def on_new_request(self, request) -> None:
        return

    def update_connector_output(self, connector_output):
        return

    def request_finished(self, request, block_ids):
        return False, None

    def take_events(self):
        return ()

    def has_pending_push_work(self) -> bool:
        return False

    @classmethod
    def get_required_kvcache_layout(cls, vllm_config):
        if cls is KVConnectorBase_V1:
            raise TypeError("get_required_kvcache_layout should not be called on the abstract base class")
        return None

    @classmethod
    def requires_piecewise_for_cudagraph(cls, extra_config) -> bool:
        return False

    def get_finished_count(self):
        return None

    @classmethod
    def build_kv_connector_stats(cls, data=None):
        return None

    def set_xfer_handshake_metadata(self, metadata) -> None:
        return None

    def set_xfer_handshake_metadata_pp_aware(self, metadata) -> None:
        if any(pp_rank != 0 for pp_rank, _ in metadata):
            raise ValueError(f"{type(self).__name__} received pp_rank > 0 handshake metadata "
                             "but does not support PP-disaggregated KV transfer.")
        self.set_xfer_handshake_metadata({tp_rank: meta for (_, tp_rank), meta in metadata.items()})

    @classmethod
    def build_prom_metrics(cls, vllm_config, metric_types, labelnames, per_engine_labelvalues):
        return None

    def reset_cache(self):
        return None


class SupportsHMA(ABC):
    """Stand-in for vllm...v1.base.SupportsHMA (same file): a connector that handles every kv-cache group of vLLM's
    hybrid KV cache manager; the scheduler then calls request_finished_all_groups instead of request_finished."""

    @abstractmethod
    def request_finished_all_groups(self, request, block_ids):
        raise NotImplementedError


def supports_hma(connector) -> bool:
    """Stand-in for vllm...v1.base.supports_hma: a class or an instance."""
    if isinstance(connector, type):
        return issubclass(connector, SupportsHMA)
    return isinstance(connector, SupportsHMA)
