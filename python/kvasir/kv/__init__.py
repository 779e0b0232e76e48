"""kvasir.kv: engine-side KV management (sagellm-kv-cache names), with a Kvasir store as the tier below.

sagellm import                                   kvasir import
``from sagellm_kv_cache import PrefixCache``      ``from kvasir.kv import PrefixCache``
``from sagellm_kv_cache.pool import KVPool``      ``from kvasir.kv.pool import KVPool`` (or kvasir.kv)
``from sagellm_kv_cache.profiling import AccessStatsCollector``  ``from kvasir.kv.profiling import ...``
``sage-kv-stats``                                ``kvasir-stats`` / ``python -m kvasir.kv.stats``

See docs/engine-side.md. Pure standard library.
"""
from .bridge import PHASES, RequestPlan, SchedRequest, SchedulerBridge, StepPlan
from .errors import *  # noqa: F401,F403 (the error family is part of the package's surface)
from .errors import __all__ as _errors_all
from .eviction import POLICY_NAMES, EvictionManager, EvictionPolicy, FIFOPolicy, LRUPolicy
from .node_policies import ChainLFUPolicy, LFUPolicy, S3FIFOPolicy
from .hashing import block_key, compute_block_hashes, hash_block
from .pool import KVHandle, KVPool
from .prefix_cache import PrefixCache, PrefixLookup
from .profiling import AccessStatsCollector, read_stats, summarize

__all__ = ["PrefixCache", "PrefixLookup", "KVPool", "KVHandle", "EvictionManager", "EvictionPolicy", "LRUPolicy",
           "FIFOPolicy", "LFUPolicy", "S3FIFOPolicy", "ChainLFUPolicy", "POLICY_NAMES", "SchedulerBridge", "SchedRequest", "RequestPlan", "StepPlan", "PHASES",
           "AccessStatsCollector", "read_stats", "summarize", "compute_block_hashes", "hash_block", "block_key",
           *_errors_all]
