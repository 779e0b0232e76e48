"""The messages of wire protocol v1 as plain objects (docs/protocol.md § Messages): what
:func:`kvasir.protocol.encode_meta` takes and :func:`kvasir.protocol.decode_meta` returns. Re-exported
by :mod:`kvasir.protocol`."""

from dataclasses import dataclass, field
from typing import List, Optional

VERSION = 1   # the protocol version this package speaks (also kvasir.protocol.VERSION)

@dataclass
class HelloRequest:
    min_version: int = VERSION
    max_version: int = VERSION
    features: int = 0
    client_name: str = "kvasir-py/0.1"


@dataclass
class HelloReply:
    version: int
    features: int
    auth_required: bool
    server_nonce: bytes
    max_value_bytes: int
    max_key_bytes: int
    max_batch_keys: int
    max_meta_bytes: int
    capacity: int
    node_id: str


@dataclass
class AuthRequest:
    client_nonce: bytes
    client_proof: bytes


@dataclass
class AuthReply:
    server_proof: bytes


@dataclass
class Ping:
    echo: bytes = b""


@dataclass
class PutEntry:
    key: bytes
    value_length: int
    crc32c: Optional[int] = None   # the writer's CRC-32C of the value: only in a PUT with VALUE_CRC
    version: int = 0   # only with the VERSION flag (HELLO feature FEATURE_VERSIONS), after the CRC


@dataclass
class PutRequest:
    parent: Optional[bytes]
    entries: List[PutEntry]
    versioned: bool = False   # the VERSION flag: every entry ends with its version (u64)


@dataclass
class PutRequestTtl(PutRequest):
    """A PUT with the TTL flag: ``ttl_seconds`` (u32, after the last entry) is every entry's time to live (0: never)."""
    ttl_seconds: int = 0


@dataclass
class KeyBatch:
    keys: List[bytes]


@dataclass
class StatusList:
    statuses: list


@dataclass
class GetEntry:
    status: int
    length: int
    crc32c: int
    version: int = 0   # sent only on a connection granted FEATURE_VERSIONS; 0 for a miss


@dataclass
class GetReply:
    entries: List[GetEntry]
    versioned: bool = False   # entries carry versions (the connection was granted FEATURE_VERSIONS)


@dataclass
class StatsRequest:
    pass


@dataclass
class Stat:
    name: str
    value: int


@dataclass
class StatsReply:
    stats: List[Stat] = field(default_factory=list)


@dataclass
class ErrorReply:
    message: str = ""


# --- shared-memory transport (docs/protocol.md § Shared memory) ---

@dataclass
class ShmInfoRequest:
    pass


@dataclass
class ShmInfoReply:
    path: str
    arena_length: int
    token: bytes
    lease_timeout_ms: int
    challenge: Optional[bytes] = None   # 16 bytes, on a connection granted FEATURE_ARENA_PROOF


@dataclass
class LeaseEntry:
    status: int
    offset: int
    length: int
    crc32c: int
    lease_id: int


@dataclass
class LeaseReply:
    entries: List[LeaseEntry]


@dataclass
class IdList:
    """RELEASE (lease ids) and COMMIT (reservation ids) requests; ``crcs``: COMMIT with COMMIT_CRC, one per id;
    ``parent``: COMMIT with CHAIN_PARENT, the key the first id's block continues."""
    ids: List[int]
    crcs: Optional[List[int]] = None
    parent: Optional[bytes] = None


@dataclass
class AllocEntry:
    key: bytes
    value_length: int


@dataclass
class AllocRequest:
    entries: List[AllocEntry]
    ttl_seconds: Optional[int] = None   # flag TTL
    proof: Optional[bytes] = None       # flag MAPPED: the 32-byte arena proof


@dataclass
class AllocReplyEntry:
    status: int
    offset: int
    reservation_id: int


@dataclass
class AllocReply:
    entries: List[AllocReplyEntry]


@dataclass
class ScanRequest:
    """SCAN (0x16) request: keys starting with ``prefix`` that sort after ``cursor`` (b"": from the start), at most ``limit``."""
    prefix: bytes
    cursor: bytes
    limit: int


@dataclass
class ScanEntry:
    key: bytes
    length: int


@dataclass
class ScanReply:
    """SCAN reply: ``tiers`` is the bit set of tiers listed (0x1 DRAM, 0x2 disk, 0x4 shared); ``cursor`` is b"" when the listing is complete."""
    tiers: int
    entries: List[ScanEntry]
    cursor: bytes


@dataclass
class InfoEntry:
    """One key of an INFO (0x17) reply, as on the wire (tier 0 none, 1 DRAM, 2 disk, 3 shared; ns_prefix b"" when none)."""
    status: int
    tier: int
    length: int
    age_ms: int
    ttl_ms: int
    pins: int
    leases: int
    ns_budget: int
    ns_used: int
    ns_prefix: bytes


@dataclass
class InfoReply:
    entries: List[InfoEntry]


@dataclass
class RemovePrefixRequest:
    """REMOVE_PREFIX (0x18) request: b"" removes every key."""
    prefix: bytes


@dataclass
class RemovePrefixReply:
    removed: int
    failed: int   # keys whose disk tombstone failed (still stored)
