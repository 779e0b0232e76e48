"""Key management messages of wire protocol v1 (docs/protocol.md, "Key management"): SCAN (0x16), INFO (0x17),
REMOVE_PREFIX (0x18) and the PUT time to live. Pure encoders and decoders; :class:`kvasir.KvStore` sends them.
``read_*`` and ``encode_*_reply`` work on the wire-level classes of :mod:`kvasir.messages` (what
:func:`kvasir.protocol.decode_frame` returns); ``decode_*`` turn a reply into what the store's API returns."""

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import ProtocolError
from .messages import InfoEntry, InfoReply, RemovePrefixReply, RemovePrefixRequest, ScanEntry, ScanReply, ScanRequest

U32_MAX = 0xFFFFFFFF
TIER_NAMES = {0: "none", 1: "dram", 2: "disk", 3: "shared"}
_INFO_FIXED = struct.Struct("<BBQQQIIQQ")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass
class KeyInfo:
    """What a node knows of one key (:meth:`kvasir.KvStore.info`)."""
    status: int          # wire status: 0 OK, 1 NOT_FOUND, 3 INVALID_KEY
    tier: str            # dram, disk, shared or none
    length: int
    age_ms: int          # since the value was written (0 when found below DRAM)
    ttl_ms: int          # until it expires; 0 when it does not
    pins: int
    leases: int
    namespace: Optional[bytes]   # the namespace prefix the key falls in; None when none
    namespace_budget: int        # bytes of this node's DRAM the namespace may hold
    namespace_used: int          # bytes it holds in DRAM now (disk and shared copies do not count)
    node: str = ""


def ttl_seconds(ttl) -> int:
    """A PUT's ``ttl`` (seconds, int or float; 0 = never expires) as the wire's u32; ValueError naming the range otherwise."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ValueError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    seconds = int(-(-ttl // 1))  # ceiling: a value never lives shorter than asked
    if ttl < 0 or seconds > U32_MAX:
        raise ValueError(f"ttl {ttl} is outside 1..{U32_MAX} seconds (0 = never expires)")
    return seconds


def _lp16(b: bytes) -> bytes:
    return _U16.pack(len(b)) + b


class _Reader:
    def __init__(self, buf):
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ProtocolError(32, "a length points past the end of the metadata")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def unpack(self, s: struct.Struct):
        return s.unpack(self.take(s.size))

    def bytes16(self) -> bytes:
        return self.take(self.unpack(_U16)[0])

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(32, f"{len(self.buf) - self.pos} unexpected bytes at the end of the metadata")


def encode_scan(prefix: bytes, cursor: bytes, limit: int) -> bytes:
    return _lp16(prefix) + _lp16(cursor) + _U32.pack(limit)


def read_scan_request(meta) -> ScanRequest:
    """The fields of a SCAN request; the caller checks them against its limits."""
    r = _Reader(meta)
    prefix, cursor = r.bytes16(), r.bytes16()
    msg = ScanRequest(prefix, cursor, r.unpack(_U32)[0])
    r.end()
    return msg


def read_scan_reply(meta) -> ScanReply:
    r = _Reader(meta)
    tiers = r.take(1)[0]
    count = r.unpack(_U32)[0]
    if count * 10 > len(r.buf) - r.pos:
        raise ProtocolError(32, "SCAN reply count does not fit the metadata")
    entries = []
    for _ in range(count):
        key = r.bytes16()
        entries.append(ScanEntry(key, r.unpack(_U64)[0]))
    cursor = r.bytes16()
    r.end()
    return ScanReply(tiers, entries, cursor)


def encode_scan_reply(reply: ScanReply) -> bytes:
    return (bytes([reply.tiers]) + _U32.pack(len(reply.entries))
            + b"".join(_lp16(e.key) + _U64.pack(e.length) for e in reply.entries) + _lp16(reply.cursor))


def decode_scan_reply(meta) -> Tuple[List[Tuple[bytes, int]], bytes, List[str]]:
    """(keys with lengths, next cursor (b"" when done), tiers listed)."""
    reply = read_scan_reply(meta)
    return ([(e.key, e.length) for e in reply.entries], reply.cursor,
            [TIER_NAMES[t] for t in (1, 2, 3) if reply.tiers & (1 << (t - 1))])


def read_info_reply(meta, count: Optional[int] = None) -> InfoReply:
    """The entries as on the wire (status and tier as ints); ``count``, when given, is the number of keys asked."""
    r = _Reader(meta)
    n = r.unpack(_U32)[0]
    if count is not None and n != count:
        raise ProtocolError(32, f"INFO reply has {n} entries for {count} keys")
    entries = []
    for _ in range(n):
        fixed = r.unpack(_INFO_FIXED)
        entries.append(InfoEntry(*fixed, r.bytes16()))
    r.end()
    return InfoReply(entries)


def encode_info_reply(reply: InfoReply) -> bytes:
    return _U32.pack(len(reply.entries)) + b"".join(
        _INFO_FIXED.pack(int(e.status), e.tier, e.length, e.age_ms, e.ttl_ms, e.pins, e.leases, e.ns_budget, e.ns_used)
        + _lp16(e.ns_prefix) for e in reply.entries)


def decode_info_reply(meta, count: int) -> List[KeyInfo]:
    return [KeyInfo(e.status, TIER_NAMES.get(e.tier, "none"), e.length, e.age_ms, e.ttl_ms, e.pins, e.leases,
                    e.ns_prefix or None, e.ns_budget, e.ns_used)
            for e in read_info_reply(meta, count).entries]


def encode_remove_prefix(prefix: bytes) -> bytes:
    return _lp16(prefix)


def read_remove_prefix_request(meta) -> RemovePrefixRequest:
    r = _Reader(meta)
    msg = RemovePrefixRequest(r.bytes16())
    r.end()
    return msg


def read_remove_prefix_reply(meta) -> RemovePrefixReply:
    r = _Reader(meta)
    msg = RemovePrefixReply(r.unpack(_U64)[0], r.unpack(_U64)[0])
    r.end()
    return msg


def encode_remove_prefix_reply(reply: RemovePrefixReply) -> bytes:
    return _U64.pack(reply.removed) + _U64.pack(reply.failed)


def decode_remove_prefix_reply(meta) -> Tuple[int, int]:
    """(removed, failed)."""
    reply = read_remove_prefix_reply(meta)
    return reply.removed, reply.failed


def quota_message(key: bytes, info: KeyInfo) -> str:
    """One line for a QUOTA_EXCEEDED PUT, naming the namespace and its budget."""
    if info.namespace is None:
        return f"key {key!r} is over a namespace quota (node {info.node})"
    return (f"namespace {info.namespace.decode('utf-8', 'replace')!r} is over its DRAM budget of {info.namespace_budget} bytes "
            f"({info.namespace_used} in DRAM on node {info.node}; disk and shared copies do not count): "
            f"remove keys under it (remove_prefix) or raise --namespace-quota")


def cluster_scan(node_stores, prefix: bytes, cursor: bytes, page_size: int):
    """A scan page over a cluster's nodes (sorted by id), one node after another. The cursor is the node's index
    (u16) then that node's own cursor."""
    from .errors import KvasirError  # noqa: PLC0415

    index, inner = 0, b""
    if cursor:
        if len(cursor) < 2:
            raise ValueError("cursor is not one a scan returned")
        index, inner = _U16.unpack(cursor[:2])[0], cursor[2:]
    tiers = ["dram"]
    while index < len(node_stores):
        node, store = node_stores[index]
        if store is None:
            raise KvasirError(f"node {node['id']} ({node['addr']}) is unreachable: its keys cannot be listed")
        entries, next_inner, tiers = store.scan(prefix, inner, page_size)
        last = index == len(node_stores) - 1
        if next_inner:
            return entries, _U16.pack(index) + next_inner, tiers
        if entries or last:
            return entries, (b"" if last else _U16.pack(index + 1)), tiers
        index, inner = index + 1, b""
    return [], b"", tiers
