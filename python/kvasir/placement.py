"""Rendezvous (highest-random-weight) placement, exactly as docs/protocol.md "Placement" specifies.

hash(bytes) = first 8 bytes of SHA-256, little-endian; weight(key, node) = mix64(hash(key) ^
hash(node id)) with the SplitMix64 finalizer; nodes rank by weight descending, then by id. The .NET
client computes the same (tests/vectors/rendezvous.json pins both).
"""

import hashlib
from typing import List, Sequence

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
