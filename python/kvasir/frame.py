"""Kvasir wire protocol v1, the frame layer (docs/protocol.md): constants and limits, opcodes, flags, features,
statuses, the 32-byte header and the metadata reader. :mod:`kvasir.protocol` re-exports all of it with the
messages' encoders and decoders.
"""

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Union

from .errors import ProtocolError
from .messages import VERSION

MAGIC = b"KVSR"
HEADER_SIZE = 32
MAX_KEY_BYTES = 512
HARD_MAX_VALUE_BYTES = 1 << 30
DEFAULT_MAX_VALUE_BYTES = 64 << 20
DEFAULT_MAX_BATCH_KEYS = 8192
DEFAULT_MAX_META_BYTES = 8 << 20
MAX_PING_BYTES = 1024
MAX_NAME_BYTES = 256
MAX_ERROR_MESSAGE_BYTES = 1024
MAX_META_LENGTH = (1 << 31) - 1
MAX_PAYLOAD_LENGTH = (1 << 63) - 1


class Opcode(enum.IntEnum):
    HELLO = 0x01
    AUTH = 0x02
    PING = 0x03
    PUT = 0x10
    GET = 0x11
    EXISTS = 0x12
    REMOVE = 0x13
    PIN = 0x14
    UNPIN = 0x15
    SCAN = 0x16
    INFO = 0x17
    REMOVE_PREFIX = 0x18
    STATS = 0x20
    SHM_INFO = 0x30
    LEASE = 0x31
    RELEASE = 0x32
    ALLOC = 0x33
    COMMIT = 0x34


class Flag(enum.IntFlag):
    NONE = 0
    CHAIN = 0x0001
    CHAIN_PARENT = 0x0002
    VALUE_CRC = 0x0004   # PUT: every entry ends with the writer's CRC-32C of its value (feature FEATURE_VALUE_CRC)
    TTL = 0x0008         # PUT: the metadata ends with a u32 time to live in seconds (feature FEATURE_TTL)
    VERSION = 0x0010     # PUT: every entry ends with a u64 version, after its CRC (feature FEATURE_VERSIONS)
    MAPPED = 0x0020      # ALLOC: the metadata ends with the arena proof; no zeroing (feature FEATURE_ARENA_PROOF)
    COMMIT_CRC = 0x0040  # COMMIT: after the ids, the writer's CRC-32C (u32) of each (feature FEATURE_ARENA_PROOF)
    CRC_TRAILER = 0x0080  # PUT: each value in the payload is followed by its writer's CRC-32C (feature FEATURE_CRC_TRAILER)
    PARENT_FOLLOWS = 0x0100  # PUT with CHAIN_PARENT: the parent may be stored after entry 0 (feature FEATURE_LATE_PARENT)
    REPLY = 0x8000


FLAG_NAMES = [("CHAIN", Flag.CHAIN), ("CHAIN_PARENT", Flag.CHAIN_PARENT), ("VALUE_CRC", Flag.VALUE_CRC), ("TTL", Flag.TTL),
              ("VERSION", Flag.VERSION), ("MAPPED", Flag.MAPPED), ("COMMIT_CRC", Flag.COMMIT_CRC),
              ("CRC_TRAILER", Flag.CRC_TRAILER), ("PARENT_FOLLOWS", Flag.PARENT_FOLLOWS), ("REPLY", Flag.REPLY)]
DEFINED_FLAGS = int(Flag.CHAIN | Flag.CHAIN_PARENT | Flag.VALUE_CRC | Flag.TTL | Flag.VERSION | Flag.MAPPED | Flag.COMMIT_CRC
                    | Flag.CRC_TRAILER | Flag.PARENT_FOLLOWS | Flag.REPLY)
PUT_FLAGS = int(Flag.CHAIN | Flag.CHAIN_PARENT | Flag.VALUE_CRC | Flag.CRC_TRAILER | Flag.PARENT_FOLLOWS)   # PUT only; TTL also on ALLOC

# HELLO feature bits (docs/protocol.md "Versioning and features", § Value versions)
FEATURE_VALUE_CRC = 0x1
FEATURE_TTL = 0x2  # PUT may carry the TTL flag and its u32 seconds
FEATURE_VERSIONS = 0x4  # PUT may carry VERSION; GET reply entries end with the value's version
FEATURE_ARENA_PROOF = 0x8  # SHM_INFO replies end with a challenge; ALLOC may carry MAPPED (and TTL), COMMIT COMMIT_CRC
FEATURE_CRC_TRAILER = 0x10  # PUT may carry CRC_TRAILER: each value followed by its writer's CRC-32C (u32) in the payload
FEATURE_COMMIT_CHAIN = 0x20  # COMMIT may carry CHAIN (its ids are one chain) and CHAIN_PARENT (the parent key, last)
FEATURE_LATE_PARENT = 0x40  # PUT may carry PARENT_FOLLOWS: the node links a chain's parent that is stored later
FEATURES = {"VALUE_CRC": FEATURE_VALUE_CRC, "TTL": FEATURE_TTL, "VERSIONS": FEATURE_VERSIONS, "ARENA_PROOF": FEATURE_ARENA_PROOF,
            "CRC_TRAILER": FEATURE_CRC_TRAILER, "COMMIT_CHAIN": FEATURE_COMMIT_CHAIN, "LATE_PARENT": FEATURE_LATE_PARENT}
PUT_TRAILER_BYTES = 4  # CRC_TRAILER: bytes after each value in a PUT's payload
ARENA_SECRET_BYTES = 32
ARENA_CHALLENGE_BYTES = 16
ARENA_PROOF_BYTES = 32


def arena_proof(secret: bytes, challenge: bytes) -> bytes:
    """HMAC-SHA256(secret, "KVASIR-SHM-1/alloc" || challenge): the proof, on ALLOC with MAPPED, that this client read
    the arena file's secret (the 32 bytes at offset arena_length) — docs/protocol.md § Writes without the node's passes."""
    if len(secret) != ARENA_SECRET_BYTES or len(challenge) != ARENA_CHALLENGE_BYTES:
        raise ValueError("the arena secret is 32 bytes and the challenge 16")
    return hmac.new(bytes(secret), b"KVASIR-SHM-1/alloc" + bytes(challenge), hashlib.sha256).digest()
MAX_VALUE_VERSION = (1 << 63) - 1


class WireStatus(enum.IntEnum):
    """Status codes on the wire: < 32 per key, >= 32 frame-level (the node closes after them)."""
    OK = 0
    NOT_FOUND = 1
    VALUE_TOO_LARGE = 2
    INVALID_KEY = 3
    OUT_OF_MEMORY = 4
    TIER_FAILED = 5
    QUOTA_EXCEEDED = 6
    BAD_FRAME = 32
    UNSUPPORTED_VERSION = 33
    UNKNOWN_OPCODE = 34
    HELLO_REQUIRED = 35
    AUTH_REQUIRED = 36
    AUTH_FAILED = 37
    FRAME_TOO_LARGE = 38
    BATCH_TOO_LARGE = 39
    BAD_STATE = 40
    SHUTTING_DOWN = 41
    INTERNAL_ERROR = 42
    LIMIT_EXCEEDED = 43


KEY_BATCH_OPCODES = (Opcode.GET, Opcode.EXISTS, Opcode.REMOVE, Opcode.PIN, Opcode.UNPIN, Opcode.LEASE, Opcode.INFO)
STATUS_LIST_OPCODES = (Opcode.PUT, Opcode.EXISTS, Opcode.REMOVE, Opcode.PIN, Opcode.UNPIN, Opcode.RELEASE, Opcode.COMMIT)


def wire_status(code: int) -> Union[WireStatus, int]:
    """The :class:`WireStatus` for a code, or the plain int when v1 does not define it."""
    try:
        return WireStatus(code)
    except ValueError:
        return code


_STATUS_OF_BYTE = [wire_status(b) for b in range(256)]   # status lists decode a byte at a time


def _bad(message: str, status: int = WireStatus.BAD_FRAME) -> ProtocolError:
    return ProtocolError(status, message)


# --- header ----------------------------------------------------------------------------------------

_HEADER = struct.Struct("<4sBBHQHHIQ")


@dataclass
class Header:
    opcode: int
    flags: int
    request_id: int
    status: int
    meta_length: int
    payload_length: int

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & Flag.REPLY)


def pack_header(opcode: int, flags: int, request_id: int, status: int, meta_length: int, payload_length: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, int(opcode), int(flags), request_id, int(status), 0, meta_length, payload_length)


def pack_header_into(buf, offset: int, opcode: int, flags: int, request_id: int, status: int,
                     meta_length: int, payload_length: int) -> None:
    _HEADER.pack_into(buf, offset, MAGIC, VERSION, int(opcode), int(flags), request_id, int(status), 0,
                      meta_length, payload_length)


def unpack_header(data) -> Header:
    """Parses and checks the 32-byte header (magic, version, reserved, representable lengths)."""
    if len(data) < HEADER_SIZE:
        raise _bad(f"header truncated: {len(data)} of {HEADER_SIZE} bytes")
    magic, version, opcode, flags, request_id, status, reserved, meta_len, payload_len = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise _bad(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise _bad(f"header version {version}; this client speaks 1", WireStatus.UNSUPPORTED_VERSION)
    if reserved != 0:
        raise _bad("reserved header field is not zero")
    if meta_len > MAX_META_LENGTH:
        raise _bad(f"metadata length {meta_len} cannot be represented", WireStatus.FRAME_TOO_LARGE)
    if payload_len > MAX_PAYLOAD_LENGTH:
        raise _bad(f"payload length {payload_len} cannot be represented", WireStatus.FRAME_TOO_LARGE)
    return Header(opcode, flags, request_id, status, meta_len, payload_len)


_LEASE_ENTRY = struct.Struct("<BQQIQ")
_ALLOC_ENTRY = struct.Struct("<BQQ")


class _Reader:
    """Bounds-checked reader over metadata; every overrun is BAD_FRAME."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf):
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        self.pos = 0

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise _bad(f"a length ({n}) points past the end of the metadata")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def unpack(self, st: struct.Struct):
        if st.size > self.remaining():
            raise _bad("metadata ends inside a field")
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def u8(self) -> int:
        return self.unpack(_U8)[0]

    def u16(self) -> int:
        return self.unpack(_U16)[0]

    def u32(self) -> int:
        return self.unpack(_U32)[0]

    def bytes16(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise _bad(f"{len(self.buf) - self.pos} stray bytes after the metadata")


_U8, _U16, _U32 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HELLO_REQ = struct.Struct("<HHQ")
_HELLO_REP1 = struct.Struct("<HQBB")
_HELLO_REP2 = struct.Struct("<QHIIQ")
_PUT_ENTRY = struct.Struct("<HQ")
_GET_ENTRY = struct.Struct("<BQI")
_I64 = struct.Struct("<q")


def _lp16(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("byte string longer than 65535 bytes")
    return _U16.pack(len(b)) + b


def _utf8(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{what} is not valid UTF-8") from None


_LENGTH_PREFIX = [_U16.pack(n) for n in range(1024)]   # u16 prefixes of the usual key lengths
