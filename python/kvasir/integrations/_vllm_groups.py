"""kv-cache groups for :mod:`kvasir.integrations.vllm` (vLLM's hybrid KV cache manager, HMA).

With the hybrid manager a model's layers fall into groups (``KVCacheConfig.kv_cache_groups``, each a
``KVCacheGroupSpec(layer_names, kv_cache_spec)``; vllm/v1/kv_cache_interface.py) and every group has its own block
table: vLLM hands connectors block ids as one list per group. The connector stores each group's blocks under their
own keys (group 0 keeps the single-group key, so stores written without the hybrid manager still hit) and restores
a prefix only when every group can be restored:

* a full-attention group (``FullAttentionSpec``, ``MLAAttentionSpec`` ...) needs every block of the prefix;
* a sliding-window group (``SlidingWindowSpec(sliding_window)``) needs only the blocks the window still sees: vLLM's
  sliding-window manager frees the blocks before ``(num_computed_tokens - sliding_window + 1) // block_size`` and
  shows them as the null block (id 0), which is never read or written;
* any other kind (``MambaSpec``, chunked local attention, ...) holds state that a prefix of blocks cannot restore,
  so a model with such a group is refused with the reason.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

NULL_BLOCK_ID = 0  # vLLM's BlockPool.null_block


@dataclass(frozen=True)
class Group:
    index: int
    layer_names: Optional[frozenset]   # None: every registered layer (no hybrid manager)
    window: Optional[int] = None       # sliding window in tokens; None: full attention

    def first_needed(self, n_blocks: int, block_size: int) -> int:
        """The first block a prefix of ``n_blocks`` needs in this group."""
        if self.window is None:
            return 0
        return max(0, n_blocks * block_size - self.window + 1) // block_size

    def skips(self, block_id: int) -> bool:
        """A block id this group never reads or writes (a sliding window's freed slot)."""
        return self.window is not None and block_id == NULL_BLOCK_ID


def groups_of(kv_cache_config, block_size: int) -> List[Group]:
    """The groups of ``kv_cache_config`` (one group of every layer when it has at most one)."""
    specs = list(getattr(kv_cache_config, "kv_cache_groups", None) or [])
    if len(specs) <= 1:
        return [Group(0, None)]
    out = []
    for i, g in enumerate(specs):
        spec = g.kv_cache_spec
        kind = type(spec).__name__
        bs = getattr(spec, "block_size", block_size)
        if bs != block_size:
            raise ValueError(f"kvasir: kv-cache group {i} ({kind}) has block size {bs}, not the engine's {block_size}; "
                             "the connector keys every group's blocks by the same token blocks")
        if "SlidingWindow" in kind:
            out.append(Group(i, frozenset(g.layer_names), int(spec.sliding_window)))
        elif "Attention" in kind and "ChunkedLocal" not in kind:
            out.append(Group(i, frozenset(g.layer_names)))
        else:
            raise ValueError(f"kvasir: kv-cache group {i} is a {kind}: its state is not restorable from a prefix of "
                             "stored blocks, so the connector cannot serve this model with vLLM's hybrid KV cache "
                             "manager (it restores full-attention and sliding-window groups only)")
    return out


def per_group(block_ids, n_groups: int) -> List[List[int]]:
    """Block ids as one list per group, from vLLM's tuple of lists (or a flat list: group 0)."""
    if block_ids is None:
        return [[] for _ in range(n_groups)]
    ids = list(block_ids)
    if ids and isinstance(ids[0], (list, tuple)):
        out = [list(g) for g in ids[:n_groups]]
    elif not ids:
        out = []
    else:
        out = [ids]
    return out + [[] for _ in range(n_groups - len(out))]


def restorable_blocks(groups: Sequence[Group], present: Sequence[Sequence[bool]], cap: int, block_size: int) -> int:
    """The longest prefix (in blocks, at most ``cap``) every group can restore from what is ``present``."""
    n_blocks = len(present[0]) if present else 0
    n = min(cap, n_blocks)
    for g, p in zip(groups, present):
        if g.window is None:
            n = min(n, next((i for i, ok in enumerate(p) if not ok), len(p)))
    while n > 0 and not all(all(p[i] for i in range(g.first_needed(n, block_size), n))
                            for g, p in zip(groups, present) if g.window is not None):
        n -= 1
    return n


def leading_in_all(present: Sequence[Sequence[bool]]) -> int:
    """Leading blocks that every group holds."""
    n = min((len(p) for p in present), default=0)
    return next((i for i in range(n) if not all(p[i] for p in present)), n)
