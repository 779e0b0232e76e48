"""Transfer engine wire protocol v1 (docs/transfer.md): the frame header, every message's metadata,
the advertisement and endpoint blobs. Pure codec: no sockets, no state.

Every decoder checks the exact layout and raises :class:`FrameError` carrying the status the spec
gives for that fault (``BAD_FRAME`` for a length or reserved field that is wrong)."""

import ipaddress
import struct
from typing import NamedTuple, Optional

# The same 32-byte header layout as the cache node's frames (docs/protocol.md), with magic "KVTX".
from ..protocol import Header  # noqa: F401 - re-exported: decode_header returns it

MAGIC = b"KVTX"
VERSION = 1
HEADER_BYTES = 32

HELLO, AUTH, WRITE, READ, NOTIFY, KV_READY = 0x01, 0x02, 0x10, 0x11, 0x12, 0x13
STAGED_WRITE, STAGED_READ = 0x14, 0x15   # only to a target whose advertisement has the staging extension
OPCODE_NAMES = {HELLO: "HELLO", AUTH: "AUTH", WRITE: "WRITE", READ: "READ", NOTIFY: "NOTIFY", KV_READY: "KV_READY",
                STAGED_WRITE: "STAGED_WRITE", STAGED_READ: "STAGED_READ"}
REPLY = 0x8000

OK, NOT_ADVERTISED, OUT_OF_BOUNDS, TOO_LARGE = 0, 1, 2, 3
BAD_FRAME, UNSUPPORTED_VERSION, AUTH_REQUIRED, AUTH_FAILED = 32, 33, 34, 35
UNKNOWN_OPCODE, BAD_SESSION, FRAME_TOO_LARGE = 36, 37, 38
STATUS_NAMES = {OK: "OK", NOT_ADVERTISED: "NOT_ADVERTISED", OUT_OF_BOUNDS: "OUT_OF_BOUNDS", TOO_LARGE: "TOO_LARGE",
                BAD_FRAME: "BAD_FRAME", UNSUPPORTED_VERSION: "UNSUPPORTED_VERSION", AUTH_REQUIRED: "AUTH_REQUIRED",
                AUTH_FAILED: "AUTH_FAILED", UNKNOWN_OPCODE: "UNKNOWN_OPCODE", BAD_SESSION: "BAD_SESSION",
                FRAME_TOO_LARGE: "FRAME_TOO_LARGE"}
FIRST_FRAME_LEVEL_STATUS = 32

MAX_LANES = 256
MAX_NOTIF = 64 * 1024
MAX_META = 65_600
MAX_SLICE_LIMIT = 64 << 20
WRITE_FIXED = 64
HELLO_BYTES = 56
AUTH_REQUEST_BYTES = 64
AUTH_REPLY_BYTES = 32
READ_BYTES = 48
KV_READY_BYTES = 56
ADVERT_BYTES = 64
ADVERT_SHM, ADVERT_STAGING = 0x01, 0x02   # advertisement flag bits: its extensions, in this order
STAGED_PREFIX = 16                          # STAGED_WRITE: staging_offset, length; STAGED_READ: staging_offset (8)
ENDPOINT_BYTES = 40
ID_BYTES = 16
TOKEN_BYTES = 16
NONCE_BYTES = 32

_HEADER = struct.Struct("<4sBBHQHHIQ")
_HELLO_REQ = struct.Struct("<HHHH16s16s16s")
_HELLO_REP = struct.Struct("<B3xI16s32s")
_WRITE = struct.Struct("<Q16sQQQQII")
_READ = struct.Struct("<Q16sQQQ")
_KV_READY = struct.Struct("<QII Q16sQQ".replace(" ", ""))
_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")
_ADVERT = struct.Struct("<4sBBH16sQ16sQQ")
_ENDPOINT = struct.Struct("<4sBBH16s16s")
_STAGING = struct.Struct("<II")
_U64X2 = struct.Struct("<QQ")


class FrameError(Exception):
    """A frame or blob that breaks the layout; ``status`` is the code the spec answers it with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"status {status}")


def is_frame_level(status: int) -> bool:
    return status >= FIRST_FRAME_LEVEL_STATUS


def encode_header(opcode: int, request_id: int, meta_length: int, payload_length: int = 0,
                  reply: bool = False, status: int = OK) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, opcode, REPLY if reply else 0, request_id, status, 0, meta_length, payload_length)


def encode_frame(opcode: int, request_id: int, meta: bytes = b"", payload: bytes = b"",
                 reply: bool = False, status: int = OK) -> bytes:
    return encode_header(opcode, request_id, len(meta), len(payload), reply, status) + bytes(meta) + bytes(payload)


def decode_header(buf, max_payload: int) -> Header:
    """Checks magic, version, flags, reserved and both length limits (``max_payload``: the receiver's max_slice)."""
    if len(buf) != HEADER_BYTES:
        raise FrameError(BAD_FRAME, f"frame header is {len(buf)} bytes, expected {HEADER_BYTES}")
    magic, version, opcode, flags, request_id, status, reserved, meta_length, payload_length = _HEADER.unpack(buf)
    if magic != MAGIC:
        raise FrameError(BAD_FRAME, f"bad magic {bytes(magic)!r}, expected {MAGIC!r} (not a transfer engine?)")
    if version != VERSION:
        raise FrameError(BAD_FRAME, f"frame version {version}, this engine speaks {VERSION}")
    if flags & ~REPLY:
        raise FrameError(BAD_FRAME, f"unknown flag bits 0x{flags & ~REPLY:04x}")
    if reserved:
        raise FrameError(BAD_FRAME, "reserved header field is not 0")
    if meta_length > MAX_META:
        raise FrameError(FRAME_TOO_LARGE, f"meta_length {meta_length} is above the limit of {MAX_META}")
    if payload_length > max_payload:
        raise FrameError(FRAME_TOO_LARGE, f"payload_length {payload_length} is above max_slice {max_payload}")
    return Header(opcode, flags, request_id, status, meta_length, payload_length)


def _exact(meta, size: int, what: str) -> None:
    if len(meta) != size:
        raise FrameError(BAD_FRAME, f"{what} metadata is {len(meta)} bytes, expected {size}")


def _id16(value, what: str) -> bytes:
    value = bytes(value)
    if len(value) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes (got {len(value)})")
    return value


class HelloRequest(NamedTuple):
    protocol_version: int
    lane_index: int
    lane_count: int
    session_id: bytes
    engine_id: bytes
    host_id: bytes


def encode_hello_request(m: HelloRequest) -> bytes:
    return _HELLO_REQ.pack(m.protocol_version, m.lane_index, m.lane_count, 0, _id16(m.session_id, "session_id"),
                           _id16(m.engine_id, "engine_id"), _id16(m.host_id, "host_id"))


def decode_hello_request(meta) -> HelloRequest:
    _exact(meta, HELLO_BYTES, "HELLO request")
    version, lane_index, lane_count, reserved, session_id, engine_id, host_id = _HELLO_REQ.unpack(meta)
    if reserved:
        raise FrameError(BAD_FRAME, "HELLO reserved field is not 0")
    return HelloRequest(version, lane_index, lane_count, session_id, engine_id, host_id)


class HelloReply(NamedTuple):
    auth_required: bool
    max_slice: int
    engine_id: bytes
    server_nonce: bytes


def encode_hello_reply(m: HelloReply) -> bytes:
    nonce = bytes(m.server_nonce)
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"server nonce must be {NONCE_BYTES} bytes")
    return _HELLO_REP.pack(1 if m.auth_required else 0, m.max_slice, _id16(m.engine_id, "engine_id"), nonce)


def decode_hello_reply(meta) -> HelloReply:
    _exact(meta, HELLO_BYTES, "HELLO reply")
    if bytes(meta[1:4]) != b"\0\0\0":
        raise FrameError(BAD_FRAME, "HELLO reply reserved bytes are not 0")
    auth, max_slice, engine_id, nonce = _HELLO_REP.unpack(meta)
    if auth not in (0, 1):
        raise FrameError(BAD_FRAME, f"HELLO reply auth_required is {auth}, expected 0 or 1")
    return HelloReply(bool(auth), max_slice, engine_id, nonce)


class AuthRequest(NamedTuple):
    client_nonce: bytes
    client_proof: bytes


def encode_auth_request(m: AuthRequest) -> bytes:
    out = bytes(m.client_nonce) + bytes(m.client_proof)
    if len(out) != AUTH_REQUEST_BYTES:
        raise ValueError("AUTH request needs a 32-byte nonce and a 32-byte proof")
    return out


def decode_auth_request(meta) -> AuthRequest:
    _exact(meta, AUTH_REQUEST_BYTES, "AUTH request")
    return AuthRequest(bytes(meta[:32]), bytes(meta[32:]))


def decode_auth_reply(meta) -> bytes:
    _exact(meta, AUTH_REPLY_BYTES, "AUTH reply")
    return bytes(meta)


class WriteSlice(NamedTuple):
    advert_id: int
    token: bytes
    window_offset: int
    transfer_length: int
    slice_offset: int
    kv_tag: int = 0
    kv_generation: int = 0
    notif: bytes = b""


def encode_write(m: WriteSlice) -> bytes:
    notif = bytes(m.notif)
    return _WRITE.pack(m.advert_id, _id16(m.token, "token"), m.window_offset, m.transfer_length, m.slice_offset,
                       m.kv_tag, m.kv_generation, len(notif)) + notif


def decode_write(meta) -> WriteSlice:
    if len(meta) < WRITE_FIXED:
        raise FrameError(BAD_FRAME, f"WRITE metadata is {len(meta)} bytes, at least {WRITE_FIXED} expected")
    advert_id, token, window_offset, transfer_length, slice_offset, kv_tag, kv_gen, notif_len = \
        _WRITE.unpack_from(meta)
    if notif_len != len(meta) - WRITE_FIXED:
        raise FrameError(BAD_FRAME, f"WRITE notif_length {notif_len} does not match the {len(meta) - WRITE_FIXED} bytes that follow")
    if notif_len and slice_offset:
        raise FrameError(BAD_FRAME, "a notification rides only on the slice at offset 0")
    if transfer_length < 1:
        raise FrameError(BAD_FRAME, "WRITE transfer_length is 0")
    if kv_tag == 0 and kv_gen:
        raise FrameError(BAD_FRAME, "WRITE kv_generation set without a kv_tag")
    return WriteSlice(advert_id, token, window_offset, transfer_length, slice_offset, kv_tag, kv_gen,
                      bytes(meta[WRITE_FIXED:]))


def encode_write_reply(slice_offset: int) -> bytes:
    return _U64.pack(slice_offset)


def decode_write_reply(meta) -> int:
    _exact(meta, 8, "WRITE reply")
    return _U64.unpack(meta)[0]


class ReadSlice(NamedTuple):
    advert_id: int
    token: bytes
    offset: int
    length: int


def encode_read(m: ReadSlice) -> bytes:
    return _READ.pack(m.advert_id, _id16(m.token, "token"), m.offset, m.length, 0)


def decode_read(meta) -> ReadSlice:
    _exact(meta, READ_BYTES, "READ request")
    advert_id, token, offset, length, reserved = _READ.unpack(meta)
    if reserved:
        raise FrameError(BAD_FRAME, "READ reserved field is not 0")
    if length < 1:
        raise FrameError(BAD_FRAME, "READ length is 0")
    return ReadSlice(advert_id, token, offset, length)


class StagedWrite(NamedTuple):
    """STAGED_WRITE: the slice [slice_offset, +length) of a write is at [staging_offset, +length) of the
    connection's staging file (docs/transfer.md § GPU memory on the same host)."""
    staging_offset: int
    length: int
    write: WriteSlice


def encode_staged_write(m: StagedWrite) -> bytes:
    return _U64X2.pack(m.staging_offset, m.length) + encode_write(m.write)


def decode_staged_write(meta) -> StagedWrite:
    if len(meta) < STAGED_PREFIX + WRITE_FIXED:
        raise FrameError(BAD_FRAME, f"STAGED_WRITE metadata is {len(meta)} bytes, at least {STAGED_PREFIX + WRITE_FIXED} expected")
    staging_offset, length = _U64X2.unpack_from(meta)
    if length < 1:
        raise FrameError(BAD_FRAME, "STAGED_WRITE length is 0")
    return StagedWrite(staging_offset, length, decode_write(memoryview(meta)[STAGED_PREFIX:]))


class StagedRead(NamedTuple):
    """STAGED_READ: the target copies the READ's window bytes to [staging_offset, +length) of the staging file."""
    staging_offset: int
    read: ReadSlice


def encode_staged_read(m: StagedRead) -> bytes:
    return _U64.pack(m.staging_offset) + encode_read(m.read)


def decode_staged_read(meta) -> StagedRead:
    _exact(meta, 8 + READ_BYTES, "STAGED_READ")
    return StagedRead(_U64.unpack_from(meta)[0], decode_read(memoryview(meta)[8:]))


class KvReady(NamedTuple):
    kv_tag: int
    kv_generation: int
    advert_id: int
    token: bytes
    capacity: int


def encode_kv_ready(m: KvReady) -> bytes:
    return _KV_READY.pack(m.kv_tag, m.kv_generation, 0, m.advert_id, _id16(m.token, "token"), m.capacity, 0)


def decode_kv_ready(meta) -> KvReady:
    _exact(meta, KV_READY_BYTES, "KV_READY")
    tag, gen, r1, advert_id, token, capacity, r2 = _KV_READY.unpack(meta)
    if r1 or r2:
        raise FrameError(BAD_FRAME, "KV_READY reserved field is not 0")
    if tag < 1:
        raise FrameError(BAD_FRAME, "KV_READY kv_tag is 0")
    return KvReady(tag, gen, advert_id, token, capacity)


class Advertisement(NamedTuple):
    engine_id: bytes
    advert_id: int
    token: bytes
    size: int
    ptr: int
    shm_path: Optional[str] = None
    file_offset: int = 0
    staging: Optional["Staging"] = None


class Staging(NamedTuple):
    """The staging extension (flag bit 1): the connection's staging file, cut in ``slot_count`` slots of
    ``slot_bytes``, through which a same-host initiator moves bytes into and out of a GPU window."""
    path: str
    slot_bytes: int
    slot_count: int


def _path16(path: str) -> bytes:
    raw = path.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("a shared-memory path is longer than 65,535 bytes")
    return _U16.pack(len(raw)) + raw


def encode_advertisement(a: Advertisement) -> bytes:
    flags = (ADVERT_SHM if a.shm_path is not None else 0) | (ADVERT_STAGING if a.staging is not None else 0)
    out = _ADVERT.pack(b"KVXA", 1, flags, 0, _id16(a.engine_id, "engine_id"), a.advert_id, _id16(a.token, "token"),
                       a.size, a.ptr)
    if a.shm_path is not None:
        out += _path16(a.shm_path) + _U64.pack(a.file_offset)
    if a.staging is not None:
        out += _path16(a.staging.path) + _STAGING.pack(a.staging.slot_bytes, a.staging.slot_count)
    return out


def _read_path(blob: bytes, at: int, what: str):
    """(path, offset after it) of a bytes16 path at ``at``."""
    if len(blob) < at + 2:
        raise ValueError(f"{what} advertisement blob ends before its path")
    (n,) = _U16.unpack_from(blob, at)
    if len(blob) < at + 2 + n:
        raise ValueError(f"{what} advertisement blob ends inside its path")
    try:
        return blob[at + 2:at + 2 + n].decode("utf-8"), at + 2 + n
    except UnicodeDecodeError:
        raise ValueError(f"{what} advertisement path is not UTF-8") from None


def decode_advertisement(blob) -> Advertisement:
    """Raises ValueError naming what is wrong with a blob that is not an advertisement of this protocol."""
    blob = bytes(blob)
    if len(blob) < ADVERT_BYTES:
        raise ValueError(f"advertisement blob is {len(blob)} bytes, expected at least {ADVERT_BYTES}")
    magic, version, flags, reserved, engine_id, advert_id, token, size, ptr = _ADVERT.unpack_from(blob)
    if magic != b"KVXA":
        raise ValueError(f"advertisement blob has magic {magic!r}, expected b'KVXA'")
    if version != 1:
        raise ValueError(f"advertisement blob version {version}, this engine speaks 1")
    if flags & ~(ADVERT_SHM | ADVERT_STAGING) or reserved:
        raise ValueError("advertisement blob has unknown flags or a reserved field set")
    at, path, file_offset, staging = ADVERT_BYTES, None, 0, None
    if flags & ADVERT_SHM:
        path, at = _read_path(blob, at, "shared-memory")
        if len(blob) < at + 8:
            raise ValueError("shared-memory advertisement blob ends before its file offset")
        (file_offset,) = _U64.unpack_from(blob, at)
        at += 8
    if flags & ADVERT_STAGING:
        staging_path, at = _read_path(blob, at, "staging")
        if len(blob) < at + _STAGING.size:
            raise ValueError("staging advertisement blob ends before its slot layout")
        slot_bytes, slot_count = _STAGING.unpack_from(blob, at)
        at += _STAGING.size
        if slot_bytes < 1 or slot_count < 1:
            raise ValueError(f"staging advertisement has {slot_count} slots of {slot_bytes} bytes (both must be >= 1)")
        staging = Staging(staging_path, slot_bytes, slot_count)
    if len(blob) != at:
        raise ValueError(f"advertisement blob is {len(blob)} bytes, expected {at}")
    return Advertisement(engine_id, advert_id, token, size, ptr, path, file_offset, staging)


class Endpoint(NamedTuple):
    address: str
    port: int
    engine_id: bytes


def encode_endpoint(e: Endpoint) -> bytes:
    ip = ipaddress.ip_address(e.address)
    family = 4 if ip.version == 4 else 6
    return _ENDPOINT.pack(b"KVXE", 1, family, e.port, ip.packed.ljust(16, b"\0"), _id16(e.engine_id, "engine_id"))


def decode_endpoint(blob) -> Endpoint:
    """Raises ValueError naming what is wrong with a blob that is not get_metadata() of this protocol."""
    blob = bytes(blob)
    if len(blob) != ENDPOINT_BYTES:
        raise ValueError(f"endpoint metadata is {len(blob)} bytes, expected {ENDPOINT_BYTES}")
    magic, version, family, port, addr, engine_id = _ENDPOINT.unpack(blob)
    if magic != b"KVXE":
        raise ValueError(f"endpoint metadata has magic {magic!r}, expected b'KVXE'")
    if version != 1:
        raise ValueError(f"endpoint metadata version {version}, this engine speaks 1")
    if family == 4:
        if any(addr[4:]):
            raise ValueError("IPv4 endpoint metadata has non-zero bytes after the address")
        address = str(ipaddress.IPv4Address(addr[:4]))
    elif family == 6:
        address = str(ipaddress.IPv6Address(addr))
    else:
        raise ValueError(f"endpoint metadata address family {family}, expected 4 or 6")
    return Endpoint(address, port, engine_id)
