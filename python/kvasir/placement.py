"""Rendezvous (highest-random-weight) placement, exactly as docs/protocol.md "Placement" specifies.

hash(bytes) = first 8 bytes of SHA-256, little-endian; weight(key, node) = mix64(hash(key) ^
hash(node id)) with the SplitMix64 finalizer; nodes rank by weight descending, then by id. The .NET
client computes the same (tests/vectors/rendezvous.json pins both). Chain placement puts every key of
a chained put on the nodes of :func:`chain_placement_key`.
"""

import hashlib
from typing import List, Optional, Sequence

from .errors import KvasirError

_M64 = (1 << 64) - 1


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Ring:
    """Node ids with their hashes precomputed; ``rank(key, r)`` gives the indexes of a key's top ``r`` nodes."""

    def __init__(self, node_ids: Sequence[str]):
        self.ids = sorted(set(node_ids))
        self.hashes = [hash64(i.encode("ascii")) for i in self.ids]

    def __len__(self):
        return len(self.ids)

    def rank(self, key: bytes, replicas: int) -> List[int]:
        kh = hash64(key)
        scored = sorted(((mix64(kh ^ h), i) for i, h in enumerate(self.hashes)), key=lambda p: (-p[0], self.ids[p[1]]))
        return [i for _, i in scored[:replicas]]

    def place(self, key: bytes, replicas: int = 1) -> List[str]:
        return [self.ids[i] for i in self.rank(key, replicas)]


def chain_placement_key(first_key: bytes, root: Optional[bytes], continues_parent: bool) -> bytes:
    """The key whose nodes hold every block of a chained put under chain placement: ``root`` when given,
    else the put's first key. A put that continues a parent chain must name its root (its own first key
    is not the chain's, and placing by it would scatter the chain)."""
    if not root and continues_parent:
        raise KvasirError("chain placement: a put that continues a parent chain must name the chain's first key (chain_root)")
    key = root or first_key
    if not 1 <= len(key) <= 512:
        raise KvasirError(f"chain placement: the chain root must be 1..512 bytes (got {len(key)})")
    return key
