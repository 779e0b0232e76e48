"""Kvasir wire protocol v1 (docs/protocol.md): frame header, every message, status codes, auth.

Pure standard library. Encoders return ``bytes``; decoders take any bytes-like object and raise
:class:`~kvasir.errors.ProtocolError` carrying the status a node would answer (``BAD_FRAME``,
``UNSUPPORTED_VERSION``, ``FRAME_TOO_LARGE``, ``BATCH_TOO_LARGE``, ...).

Layers (the constants, the header and the metadata reader live in :mod:`kvasir.frame`, re-exported here):

* :func:`pack_header` / :func:`unpack_header` -- the 32-byte header alone.
* :func:`encode_meta` / :func:`decode_meta` -- the metadata of one message, given its header.
* :func:`encode_frame` / :func:`decode_frame` -- a whole frame (header, metadata, payload).
  ``decode_frame(data, request=True)`` also applies the rules a node applies to requests
  (flags per opcode, status 0, no payload but on PUT, ``max_meta_bytes``, PING size, HELLO range).
"""

from dataclasses import dataclass
from typing import Optional

from . import keys as _keys
from .auth import CLIENT_LABEL, NONCE_BYTES, SERVER_LABEL, client_proof, new_nonce, parse_auth_key, proofs_equal, server_proof  # noqa: F401
from .crc32c import crc32c  # noqa: F401
from .errors import ProtocolError  # noqa: F401 - kvasir.protocol.ProtocolError, as before
from .messages import (  # noqa: F401 - re-exported: the message classes are part of this module's API
    VERSION, HelloRequest, HelloReply, AuthRequest, AuthReply, Ping, PutEntry,
    PutRequest, PutRequestTtl, KeyBatch, StatusList, GetEntry, GetReply, StatsRequest,
    Stat, StatsReply, ErrorReply, ShmInfoRequest, ShmInfoReply, LeaseEntry,
    LeaseReply, IdList, AllocEntry, AllocRequest, AllocReplyEntry, AllocReply,
    ScanRequest, ScanEntry, ScanReply, InfoEntry, InfoReply, RemovePrefixRequest, RemovePrefixReply,
)
from .frame import (  # noqa: F401 - the frame layer is part of this module's API
    ARENA_CHALLENGE_BYTES, ARENA_PROOF_BYTES, ARENA_SECRET_BYTES, DEFAULT_MAX_BATCH_KEYS, DEFAULT_MAX_META_BYTES, DEFAULT_MAX_VALUE_BYTES, DEFINED_FLAGS,
    FEATURES, FEATURE_ARENA_PROOF, FEATURE_COMMIT_CHAIN, FEATURE_CRC_TRAILER, FEATURE_LATE_PARENT, FEATURE_TTL, FEATURE_VALUE_CRC, FEATURE_VERSIONS, FLAG_NAMES,
    Flag, HARD_MAX_VALUE_BYTES, HEADER_SIZE, Header, KEY_BATCH_OPCODES, MAGIC,
    MAX_ERROR_MESSAGE_BYTES, MAX_KEY_BYTES, MAX_META_LENGTH, MAX_NAME_BYTES, MAX_PAYLOAD_LENGTH, MAX_PING_BYTES,
    MAX_VALUE_VERSION, Opcode, PUT_FLAGS, PUT_TRAILER_BYTES, STATUS_LIST_OPCODES, WireStatus, _ALLOC_ENTRY,
    _GET_ENTRY, _HELLO_REP1, _HELLO_REP2, _HELLO_REQ, _I64, _LEASE_ENTRY,
    _LENGTH_PREFIX, _PUT_ENTRY, _Reader, _STATUS_OF_BYTE, _U16, _U32,
    _U64, _U8, _bad, _lp16, _utf8, arena_proof,
    pack_header, pack_header_into, unpack_header, wire_status,
)


def encode_key_batch(keys) -> bytes:
    """u32 count, then each key as bytes16 (GET, EXISTS, REMOVE, PIN, UNPIN, LEASE)."""
    try:
        prefixes = [_LENGTH_PREFIX[len(k)] for k in keys]
    except IndexError:
        prefixes = [_lp16(bytes(k))[:2] for k in keys]
    parts = [_U32.pack(len(keys))]
    parts += [x for pair in zip(prefixes, keys) for x in pair]
    return b"".join(parts)


def encode_alloc_request(keys, lengths, ttl_seconds: Optional[int] = None, proof: Optional[bytes] = None) -> bytes:
    """ALLOC metadata for parallel lists of keys (bytes) and value lengths (the fast form of
    ``encode_meta(AllocRequest(...))``); then ``ttl_seconds`` (u32, flag TTL) and ``proof`` (flag MAPPED)."""
    out = bytearray(_U32.pack(len(keys)))
    for k, n in zip(keys, lengths):
        if len(k) > 0xFFFF:
            raise ValueError("byte string longer than 65535 bytes")
        out += _U16.pack(len(k))
        out += k
        out += _U64.pack(n)
    if ttl_seconds is not None:
        out += _U32.pack(ttl_seconds)
    if proof is not None:
        out += bytes(proof)
    return bytes(out)


def encode_commit(ids, crcs=None, parent: Optional[bytes] = None) -> bytes:
    """COMMIT metadata: the ids, then with ``crcs`` (flag COMMIT_CRC) a u32 CRC-32C per id, then with ``parent``
    (flag CHAIN_PARENT, feature FEATURE_COMMIT_CHAIN) the key the first id's block continues."""
    out = _U32.pack(len(ids)) + b"".join(_U64.pack(i) for i in ids)
    if crcs is not None:
        if len(crcs) != len(ids):
            raise ValueError("one CRC per id")
        out += b"".join(_U32.pack(c) for c in crcs)
    if parent is not None:
        out += _lp16(parent)
    return out


def encode_put_meta(entries, parent: Optional[bytes] = None, versions: Optional[list] = None,
                    ttl_seconds: Optional[int] = None) -> bytes:
    """``entries``: (key, value_length) pairs, (key, value_length, crc32c) triples (VALUE_CRC: every entry has
    one) or :class:`PutEntry`; ``parent`` only with CHAIN_PARENT; ``versions`` (one per entry) only with the
    VERSION flag; ``ttl_seconds`` (u32) only with TTL, after the last entry. Per entry the order is: key, CRC,
    version."""
    out = bytearray()
    if parent is not None:
        out += _lp16(parent)
    out += _U32.pack(len(entries))
    for n, e in enumerate(entries):
        key, length, *crc = (e.key, e.value_length, *(() if e.crc32c is None else (e.crc32c,))) if isinstance(e, PutEntry) else e
        out += _PUT_ENTRY.pack(len(key), length)
        out += key
        if crc:
            out += _U32.pack(crc[0])
        if versions is not None:
            out += _U64.pack(versions[n])
    if ttl_seconds is not None:
        out += _U32.pack(ttl_seconds)
    return bytes(out)


def put_entry_size(key_length: int, value_crc: bool = False, versioned: bool = False) -> int:
    return _PUT_ENTRY.size + key_length + (4 if value_crc else 0) + (8 if versioned else 0)


def encode_meta(msg) -> bytes:
    """Metadata bytes of a message object."""
    if isinstance(msg, HelloRequest):
        return _HELLO_REQ.pack(msg.min_version, msg.max_version, msg.features) + _lp16(msg.client_name.encode("utf-8"))
    if isinstance(msg, HelloReply):
        if len(msg.server_nonce) != NONCE_BYTES:
            raise ValueError("server nonce must be 32 bytes")
        return (_HELLO_REP1.pack(msg.version, msg.features, 1 if msg.auth_required else 0, 0) + bytes(msg.server_nonce)
                + _HELLO_REP2.pack(msg.max_value_bytes, msg.max_key_bytes, msg.max_batch_keys, msg.max_meta_bytes, msg.capacity)
                + _lp16(msg.node_id.encode("utf-8")))
    if isinstance(msg, AuthRequest):
        if len(msg.client_nonce) != NONCE_BYTES or len(msg.client_proof) != 32:
            raise ValueError("client nonce and proof must be 32 bytes each")
        return bytes(msg.client_nonce) + bytes(msg.client_proof)
    if isinstance(msg, AuthReply):
        if len(msg.server_proof) != 32:
            raise ValueError("server proof must be 32 bytes")
        return bytes(msg.server_proof)
    if isinstance(msg, Ping):
        return bytes(msg.echo)
    if isinstance(msg, PutRequest):
        return encode_put_meta(msg.entries, msg.parent, [e.version for e in msg.entries] if msg.versioned else None,
                               getattr(msg, "ttl_seconds", None))
    if isinstance(msg, KeyBatch):
        return encode_key_batch(msg.keys)
    if isinstance(msg, StatusList):
        return _U32.pack(len(msg.statuses)) + bytes(int(s) for s in msg.statuses)
    if isinstance(msg, GetReply):
        return _U32.pack(len(msg.entries)) + b"".join(_GET_ENTRY.pack(int(e.status), e.length, e.crc32c)
                                                      + (_U64.pack(e.version) if msg.versioned else b"") for e in msg.entries)
    if isinstance(msg, StatsRequest):
        return b""
    if isinstance(msg, StatsReply):
        out = bytearray(_U32.pack(len(msg.stats)))
        for s in msg.stats:
            name = s.name.encode("ascii")
            out += _U8.pack(len(name)) + name + _I64.pack(s.value)
        return bytes(out)
    if isinstance(msg, ErrorReply):
        return _lp16(msg.message.encode("utf-8")[:MAX_ERROR_MESSAGE_BYTES])
    if isinstance(msg, ShmInfoRequest):
        return b""
    if isinstance(msg, ShmInfoReply):
        return (_lp16(msg.path.encode("utf-8")) + _U64.pack(msg.arena_length) + bytes(msg.token) + _U32.pack(msg.lease_timeout_ms)
                + (b"" if msg.challenge is None else bytes(msg.challenge)))
    if isinstance(msg, LeaseReply):
        return _U32.pack(len(msg.entries)) + b"".join(
            _LEASE_ENTRY.pack(int(e.status), e.offset, e.length, e.crc32c, e.lease_id) for e in msg.entries)
    if isinstance(msg, IdList):
        return encode_commit(msg.ids, msg.crcs, msg.parent)
    if isinstance(msg, AllocRequest):
        return encode_alloc_request([bytes(e.key) for e in msg.entries], [e.value_length for e in msg.entries],
                                    msg.ttl_seconds, msg.proof)
    if isinstance(msg, AllocReply):
        return _U32.pack(len(msg.entries)) + b"".join(_ALLOC_ENTRY.pack(int(e.status), e.offset, e.reservation_id) for e in msg.entries)
    return _encode_key_message(msg)


def _encode_key_message(msg) -> bytes:
    """Metadata of the key management messages (SCAN, INFO, REMOVE_PREFIX), through :mod:`kvasir.keys`."""
    if isinstance(msg, ScanRequest):
        return _keys.encode_scan(bytes(msg.prefix), bytes(msg.cursor), msg.limit)
    if isinstance(msg, ScanReply):
        return _keys.encode_scan_reply(msg)
    if isinstance(msg, InfoReply):
        return _keys.encode_info_reply(msg)
    if isinstance(msg, RemovePrefixRequest):
        return _keys.encode_remove_prefix(bytes(msg.prefix))
    if isinstance(msg, RemovePrefixReply):
        return _keys.encode_remove_prefix_reply(msg)
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def _decode_key_batch(r: _Reader, max_batch_keys: int) -> KeyBatch:
    count = r.u32()
    if count > max_batch_keys:
        raise _bad(f"batch of {count} keys exceeds the limit of {max_batch_keys}", WireStatus.BATCH_TOO_LARGE)
    if count * 2 > r.remaining():
        raise _bad(f"batch of {count} keys cannot fit {r.remaining()} bytes of metadata")
    return KeyBatch([r.bytes16() for _ in range(count)])


def _decode_status_list(r: _Reader) -> StatusList:
    count = r.u32()
    if count > r.remaining():
        raise _bad(f"status list of {count} cannot fit the metadata")
    return StatusList([_STATUS_OF_BYTE[b] for b in r.take(count)])


def decode_meta(header: Header, meta, *, max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS, versions: bool = False):
    """Decodes the metadata of a frame whose header is ``header``; consumes it exactly.
    ``versions``: the connection was granted FEATURE_VERSIONS (GET reply entries end with a version).

    Requests (no REPLY flag) and replies are told apart by the flag. A reply with a non-zero
    header status is an :class:`ErrorReply` (empty metadata = no message). A PUT request's payload
    length must equal the sum of its value lengths; a GET reply's, the sum of its entry lengths.
    """
    r = _Reader(meta)
    try:
        op = Opcode(header.opcode)
    except ValueError:
        raise _bad(f"opcode 0x{header.opcode:02x} is not defined in v1", WireStatus.UNKNOWN_OPCODE) from None
    if header.is_reply:
        if header.status != WireStatus.OK:
            if len(r.buf) == 0:
                return ErrorReply("")
            raw = r.bytes16()
            r.end()
            return ErrorReply(raw.decode("utf-8", errors="replace"))
        if op == Opcode.HELLO:
            version, features, auth, reserved = r.unpack(_HELLO_REP1)
            if auth not in (0, 1):
                raise _bad(f"auth_required is {auth}")
            if reserved != 0:
                raise _bad("HELLO reply reserved byte is not zero")
            nonce = r.take(NONCE_BYTES)
            mv, mk, mb, mm, cap = r.unpack(_HELLO_REP2)
            node_id = _utf8(r.bytes16(), "node id")
            msg = HelloReply(version, features, bool(auth), nonce, mv, mk, mb, mm, cap, node_id)
        elif op == Opcode.AUTH:
            if len(r.buf) != 32:
                raise _bad(f"AUTH reply of {len(r.buf)} bytes; expected 32")
            msg = AuthReply(r.take(32))
        elif op == Opcode.PING:
            msg = Ping(r.take(r.remaining()))
        elif op == Opcode.GET:
            count = r.u32()
            if count * (_GET_ENTRY.size + (8 if versions else 0)) > r.remaining():
                raise _bad(f"GET reply of {count} entries cannot fit the metadata")
            entries = []
            total = 0
            for _ in range(count):
                s, length, crc = r.unpack(_GET_ENTRY)
                if s != WireStatus.OK and (length or crc):
                    raise _bad("GET miss with a non-zero length or CRC")
                version = r.unpack(_U64)[0] if versions else 0
                if version > MAX_VALUE_VERSION:
                    raise _bad("version out of range in GET reply")
                total += length
                entries.append(GetEntry(wire_status(s), length, crc, version))
            if total != header.payload_length:
                raise _bad(f"payload length {header.payload_length} differs from the sum of the value lengths {total}")
            msg = GetReply(entries, versions)
        elif op == Opcode.SHM_INFO:
            path = _utf8(r.bytes16(), "arena path")
            length = r.unpack(_U64)[0]
            token, timeout = r.take(16), r.unpack(_U32)[0]
            # the challenge (feature 0x8) is there exactly when 16 bytes follow the lease timeout
            msg = ShmInfoReply(path, length, token, timeout, r.take(ARENA_CHALLENGE_BYTES) if r.remaining() == ARENA_CHALLENGE_BYTES else None)
        elif op == Opcode.LEASE:
            count = r.u32()
            if count * _LEASE_ENTRY.size != r.remaining():
                raise _bad("LEASE reply length does not match its count")
            msg = LeaseReply([LeaseEntry(wire_status(st), o, n, c, i) for st, o, n, c, i in (r.unpack(_LEASE_ENTRY) for _ in range(count))])
        elif op == Opcode.ALLOC:
            count = r.u32()
            if count * _ALLOC_ENTRY.size != r.remaining():
                raise _bad("ALLOC reply length does not match its count")
            msg = AllocReply([AllocReplyEntry(wire_status(st), o, i) for st, o, i in (r.unpack(_ALLOC_ENTRY) for _ in range(count))])
        elif op in (Opcode.SCAN, Opcode.INFO, Opcode.REMOVE_PREFIX):
            msg = _decode_key_reply(op, r.take(r.remaining()))
        elif op in STATUS_LIST_OPCODES:
            msg = _decode_status_list(r)
        else:  # STATS
            count = r.u32()
            stats = []
            for _ in range(count):
                name = r.take(r.u8())
                try:
                    text = name.decode("ascii")
                except UnicodeDecodeError:
                    raise _bad("stat name is not ASCII") from None
                stats.append(Stat(text, r.unpack(_I64)[0]))
            msg = StatsReply(stats)
        r.end()
        if op != Opcode.GET and header.payload_length != 0:
            raise _bad(f"{op.name} reply with a payload")
        return msg

    # requests
    if op == Opcode.HELLO:
        lo, hi, features = r.unpack(_HELLO_REQ)
        name = r.bytes16()
        if len(name) > MAX_NAME_BYTES:
            raise _bad(f"client name of {len(name)} bytes; at most {MAX_NAME_BYTES}")
        msg = HelloRequest(lo, hi, features, _utf8(name, "client name"))
    elif op == Opcode.AUTH:
        if len(r.buf) != 2 * NONCE_BYTES:
            raise _bad(f"AUTH metadata of {len(r.buf)} bytes; expected 64")
        msg = AuthRequest(r.take(32), r.take(32))
    elif op == Opcode.PING:
        msg = Ping(r.take(r.remaining()))
    elif op == Opcode.PUT:
        parent = r.bytes16() if header.flags & Flag.CHAIN_PARENT else None
        with_crc = bool(header.flags & Flag.VALUE_CRC)
        trailer = bool(header.flags & Flag.CRC_TRAILER)
        if with_crc and trailer:
            raise _bad("PUT flags VALUE_CRC and CRC_TRAILER exclude each other: a value's CRC is in its entry or after its bytes")
        count = r.u32()
        if count > max_batch_keys:
            raise _bad(f"batch of {count} keys exceeds the limit of {max_batch_keys}", WireStatus.BATCH_TOO_LARGE)
        versioned = bool(header.flags & Flag.VERSION)
        if count * put_entry_size(0, with_crc, versioned) > r.remaining():
            raise _bad(f"PUT of {count} entries cannot fit {r.remaining()} bytes of metadata")
        entries = []
        total = 0
        for _ in range(count):
            klen, vlen = r.unpack(_PUT_ENTRY)
            if vlen > HARD_MAX_VALUE_BYTES:
                raise _bad(f"value of {vlen} bytes exceeds the hard limit of {HARD_MAX_VALUE_BYTES}",
                           WireStatus.FRAME_TOO_LARGE)
            key = r.take(klen)
            crc = r.unpack(_U32)[0] if with_crc else None
            version = r.unpack(_U64)[0] if versioned else 0
            if version > MAX_VALUE_VERSION:
                raise _bad(f"version {version} exceeds the largest version {MAX_VALUE_VERSION}")
            entries.append(PutEntry(key, vlen, crc, version))
            total += vlen
        ttl = r.u32() if header.flags & Flag.TTL else None
        r.end()
        if trailer and total + PUT_TRAILER_BYTES * count != header.payload_length:
            raise _bad(f"payload length {header.payload_length} differs from the sum of the value lengths {total} "
                       f"plus a 4-byte CRC trailer per entry ({total + PUT_TRAILER_BYTES * count}): CRC_TRAILER")
        if not trailer and total != header.payload_length:
            raise _bad(f"payload length {header.payload_length} differs from the sum of the value lengths {total}")
        msg = PutRequest(parent, entries, versioned) if ttl is None else PutRequestTtl(parent, entries, versioned, ttl_seconds=ttl)
    elif op in KEY_BATCH_OPCODES:
        msg = _decode_key_batch(r, max_batch_keys)
    elif op in (Opcode.SCAN, Opcode.REMOVE_PREFIX):
        msg = _decode_key_request(op, r.take(r.remaining()), max_batch_keys)
    elif op in (Opcode.RELEASE, Opcode.COMMIT):
        count = r.u32()
        if count > max_batch_keys:
            raise _bad(f"{count} ids exceed the limit of {max_batch_keys}", WireStatus.BATCH_TOO_LARGE)
        with_crcs = bool(header.flags & Flag.COMMIT_CRC)
        with_parent = op == Opcode.COMMIT and bool(header.flags & Flag.CHAIN_PARENT)
        fixed = count * (12 if with_crcs else 8)
        if (fixed + 2 > r.remaining()) if with_parent else (fixed != r.remaining()):
            raise _bad("id list length does not match its count")
        ids = [r.unpack(_U64)[0] for _ in range(count)]
        crcs = [r.u32() for _ in range(count)] if with_crcs else None
        msg = IdList(ids, crcs, r.bytes16() if with_parent else None)
    elif op == Opcode.ALLOC:
        count = r.u32()
        if count > max_batch_keys:
            raise _bad(f"{count} keys exceed the limit of {max_batch_keys}", WireStatus.BATCH_TOO_LARGE)
        entries = [AllocEntry(r.bytes16(), r.unpack(_U64)[0]) for _ in range(count)]
        ttl = r.u32() if header.flags & Flag.TTL else None
        proof = r.take(ARENA_PROOF_BYTES) if header.flags & Flag.MAPPED else None
        msg = AllocRequest(entries, ttl, proof)
    elif op == Opcode.SHM_INFO:
        msg = ShmInfoRequest()
    else:  # STATS
        msg = StatsRequest()
    r.end()
    return msg


def _decode_key_reply(op: Opcode, meta: bytes):
    if op == Opcode.SCAN:
        return _keys.read_scan_reply(meta)
    if op == Opcode.INFO:
        reply = _keys.read_info_reply(meta)
        for e in reply.entries:
            e.status = wire_status(e.status)
        return reply
    return _keys.read_remove_prefix_reply(meta)


def _decode_key_request(op: Opcode, meta: bytes, max_batch_keys: int):
    """SCAN or REMOVE_PREFIX request, with the limits a node applies (docs/protocol.md § Key management)."""
    if op == Opcode.REMOVE_PREFIX:
        msg = _keys.read_remove_prefix_request(meta)
        if len(msg.prefix) > MAX_KEY_BYTES:
            raise _bad(f"REMOVE_PREFIX prefix of {len(msg.prefix)} bytes; at most {MAX_KEY_BYTES}")
        return msg
    msg = _keys.read_scan_request(meta)
    if max(len(msg.prefix), len(msg.cursor)) > MAX_KEY_BYTES:
        raise _bad(f"SCAN prefix or cursor longer than the {MAX_KEY_BYTES}-byte key limit")
    if msg.limit == 0:
        raise _bad("SCAN limit must be at least 1")
    if msg.limit > max_batch_keys:
        raise _bad(f"SCAN limit {msg.limit} exceeds the batch limit of {max_batch_keys}", WireStatus.BATCH_TOO_LARGE)
    return msg


# --- whole frames ----------------------------------------------------------------------------------

@dataclass
class Frame:
    header: Header
    meta: object
    payload: bytes


def encode_frame(opcode: int, flags: int, request_id: int, status: int, msg, payload: bytes = b"") -> bytes:
    meta = encode_meta(msg)
    return pack_header(opcode, flags, request_id, status, len(meta), len(payload)) + meta + bytes(payload)


def check_request_header(h: Header, *, max_meta_bytes: int = DEFAULT_MAX_META_BYTES, versions: bool = False,
                         commit_chain: bool = False, crc_trailer: bool = False, late_parent: bool = False) -> None:
    """The header checks a node applies to a request (steps 6-12 of the protocol's order of checks);
    ``versions``: the connection was granted FEATURE_VERSIONS, so PUT may carry VERSION; ``commit_chain``: it was
    granted FEATURE_COMMIT_CHAIN, so COMMIT may carry CHAIN and CHAIN_PARENT; ``crc_trailer``: it was granted
    FEATURE_CRC_TRAILER, so PUT may carry CRC_TRAILER; ``late_parent``: it was granted FEATURE_LATE_PARENT, so PUT may carry
    PARENT_FOLLOWS (with CHAIN_PARENT)."""
    if h.is_reply:
        raise _bad("REPLY flag in a request")
    try:
        op = Opcode(h.opcode)
    except ValueError:
        raise _bad(f"opcode 0x{h.opcode:02x} is not defined in v1", WireStatus.UNKNOWN_OPCODE) from None
    if h.flags & ~DEFINED_FLAGS:
        raise _bad(f"undefined flag bits 0x{h.flags & ~DEFINED_FLAGS:04x}")
    if h.flags & (Flag.VALUE_CRC | Flag.CRC_TRAILER) and op != Opcode.PUT:
        raise _bad("only PUT may carry VALUE_CRC or CRC_TRAILER")
    if h.flags & (Flag.CHAIN | Flag.CHAIN_PARENT) and op != Opcode.PUT and not (op == Opcode.COMMIT and commit_chain):
        raise _bad("only PUT may carry CHAIN or CHAIN_PARENT (and COMMIT, on a connection granted HELLO bit 0x20)")
    if h.flags & Flag.CRC_TRAILER and not crc_trailer:
        raise _bad("PUT flag CRC_TRAILER (0x0080) needs feature CRC_TRAILER (HELLO bit 0x10) granted first")
    if h.flags & Flag.TTL and op not in (Opcode.PUT, Opcode.ALLOC):
        raise _bad("only PUT and ALLOC may carry TTL")
    if h.flags & Flag.MAPPED and op != Opcode.ALLOC:
        raise _bad("only ALLOC may carry MAPPED")
    if h.flags & Flag.COMMIT_CRC and op != Opcode.COMMIT:
        raise _bad("only COMMIT may carry COMMIT_CRC")
    if h.flags & Flag.CHAIN_PARENT and not h.flags & Flag.CHAIN:
        raise _bad("CHAIN_PARENT without CHAIN")
    if h.flags & Flag.PARENT_FOLLOWS:
        if op != Opcode.PUT or not late_parent:
            raise _bad("PUT flag PARENT_FOLLOWS (0x0100) needs feature LATE_PARENT (HELLO bit 0x40) granted first")
        if not h.flags & Flag.CHAIN_PARENT:
            raise _bad("PUT flag PARENT_FOLLOWS (0x0100) without CHAIN_PARENT: it says when the parent key may come")
    if h.flags & Flag.VERSION and (op != Opcode.PUT or not versions):
        raise _bad("VERSION is only for PUT, on a connection granted the versions feature (HELLO bit 0x4)")
    if h.status != 0:
        raise _bad("non-zero status in a request")
    if h.meta_length > max_meta_bytes:
        raise _bad(f"metadata of {h.meta_length} bytes exceeds the limit of {max_meta_bytes}", WireStatus.FRAME_TOO_LARGE)
    if h.payload_length != 0 and op != Opcode.PUT:
        raise _bad(f"payload on a {op.name} request")
    if op == Opcode.PING and h.meta_length > MAX_PING_BYTES:
        raise _bad(f"PING echo of {h.meta_length} bytes; at most {MAX_PING_BYTES}", WireStatus.FRAME_TOO_LARGE)
    if op == Opcode.STATS and h.meta_length != 0:
        raise _bad("STATS with metadata")


def decode_frame(data, *, request: bool = False, max_batch_keys: int = DEFAULT_MAX_BATCH_KEYS,
                 max_meta_bytes: int = DEFAULT_MAX_META_BYTES, versions: bool = False, commit_chain: bool = False,
                 crc_trailer: bool = False, late_parent: bool = False) -> Frame:
    """Decodes one complete frame, which must be exactly ``data``.

    With ``request=True`` the frame must be a valid request under the node's rules as well
    (:func:`check_request_header`, and a HELLO version range that includes 1).
    """
    h = unpack_header(data)
    if request:
        check_request_header(h, max_meta_bytes=max_meta_bytes, versions=versions, commit_chain=commit_chain,
                             crc_trailer=crc_trailer, late_parent=late_parent)
    meta_end = HEADER_SIZE + h.meta_length
    if len(data) < meta_end:
        raise _bad(f"frame ends inside its metadata ({len(data) - HEADER_SIZE} of {h.meta_length} bytes)")
    msg = decode_meta(h, memoryview(data)[HEADER_SIZE:meta_end], max_batch_keys=max_batch_keys, versions=versions)
    if request and isinstance(msg, HelloRequest) and not (msg.min_version <= VERSION <= msg.max_version):
        raise _bad(f"client speaks versions {msg.min_version}..{msg.max_version}; this node speaks 1",
                   WireStatus.UNSUPPORTED_VERSION)
    if len(data) != meta_end + h.payload_length:
        raise _bad(f"frame of {len(data)} bytes; the header declares {meta_end + h.payload_length}")
    return Frame(h, msg, bytes(data[meta_end:]))


def split_put_payload(msg: PutRequest, payload, crc_trailer: bool = False) -> list:
    """The values of a decoded PUT's payload, in entry order, as ``(value, crc32c)`` pairs: with ``crc_trailer`` (flag
    CRC_TRAILER) the CRC that followed each value, else the entry's own (``None`` without VALUE_CRC)."""
    out, offset = [], 0
    for e in msg.entries:
        value = bytes(payload[offset:offset + e.value_length])
        offset += e.value_length
        crc = e.crc32c
        if crc_trailer:
            crc = _U32.unpack_from(payload, offset)[0]
            offset += PUT_TRAILER_BYTES
        out.append((value, crc))
    if offset != len(payload):
        raise _bad(f"PUT payload of {len(payload)} bytes; its entries account for {offset}")
    return out
