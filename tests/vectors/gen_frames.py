#!/usr/bin/python3
"""Generates tests/vectors/frames.json, the golden frames of Kvasir wire protocol v1.

This is an independent implementation of docs/protocol.md (it does not use the .NET code), so the
.NET tests that check the committed JSON against src/Kvasir.Protocol cross-check the two.
The committed frames.json is the source of truth: tests read it, they never regenerate it.
Run from anywhere:  /usr/bin/python3 tests/vectors/gen_frames.py
"""
import hashlib
import hmac
import json
import os
import struct

MAGIC = b"KVSR"
VERSION = 1
OPCODES = {"HELLO": 0x01, "AUTH": 0x02, "PING": 0x03, "PUT": 0x10, "GET": 0x11, "EXISTS": 0x12,
           "REMOVE": 0x13, "PIN": 0x14, "UNPIN": 0x15, "SCAN": 0x16, "INFO": 0x17, "REMOVE_PREFIX": 0x18, "STATS": 0x20,
           "SHM_INFO": 0x30, "LEASE": 0x31, "RELEASE": 0x32, "ALLOC": 0x33, "COMMIT": 0x34}
FLAGS = {"CHAIN": 0x0001, "CHAIN_PARENT": 0x0002, "VALUE_CRC": 0x0004, "TTL": 0x0008, "VERSION": 0x0010,
         "MAPPED": 0x0020, "COMMIT_CRC": 0x0040, "CRC_TRAILER": 0x0080, "PARENT_FOLLOWS": 0x0100, "REPLY": 0x8000}
FEATURES = {"VALUE_CRC": 0x1, "TTL": 0x2, "VERSIONS": 0x4, "ARENA_PROOF": 0x8, "CRC_TRAILER": 0x10, "COMMIT_CHAIN": 0x20,
            "LATE_PARENT": 0x40}
FEATURE_VERSIONS = FEATURES["VERSIONS"]
STATUSES = {"OK": 0, "NOT_FOUND": 1, "VALUE_TOO_LARGE": 2, "INVALID_KEY": 3, "OUT_OF_MEMORY": 4, "TIER_FAILED": 5, "QUOTA_EXCEEDED": 6,
            "BAD_FRAME": 32, "UNSUPPORTED_VERSION": 33, "UNKNOWN_OPCODE": 34, "HELLO_REQUIRED": 35,
            "AUTH_REQUIRED": 36, "AUTH_FAILED": 37, "FRAME_TOO_LARGE": 38, "BATCH_TOO_LARGE": 39,
            "BAD_STATE": 40, "SHUTTING_DOWN": 41, "INTERNAL_ERROR": 42, "LIMIT_EXCEEDED": 43}

# --- CRC-32C (Castagnoli, reflected 0x82F63B78, init and final xor 0xFFFFFFFF) ---------------------
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

# --- auth ------------------------------------------------------------------------------------------
AUTH_KEY = bytes(range(0x00, 0x20))
SERVER_NONCE = bytes(range(0x40, 0x60))
CLIENT_NONCE = bytes(range(0x60, 0x80))


def proof(label: bytes, key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(key, label + server_nonce + client_nonce, hashlib.sha256).digest()


CLIENT_PROOF = proof(b"KVASIR-AUTH-1/client", AUTH_KEY, SERVER_NONCE, CLIENT_NONCE)
SERVER_PROOF = proof(b"KVASIR-AUTH-1/server", AUTH_KEY, SERVER_NONCE, CLIENT_NONCE)
WRONG_KEY = bytes(range(0x01, 0x21))
WRONG_PROOF = proof(b"KVASIR-AUTH-1/client", WRONG_KEY, SERVER_NONCE, CLIENT_NONCE)


# --- encoding --------------------------------------------------------------------------------------
def header(opcode: int, flags: int, request_id: int, status: int, meta_len: int, payload_len: int,
           version: int = VERSION, reserved: int = 0, magic: bytes = MAGIC) -> bytes:
    return magic + struct.pack("<BBHQHHIQ", version, opcode, flags, request_id, status, reserved,
                               meta_len, payload_len)


def lp16(b: bytes) -> bytes:
    return struct.pack("<H", len(b)) + b


def frame(opcode: str, flags: list, request_id: int, status: str, meta: bytes, payload: bytes = b"") -> bytes:
    f = 0
    for name in flags:
        f |= FLAGS[name]
    return header(OPCODES[opcode], f, request_id, STATUSES[status], len(meta), len(payload)) + meta + payload


def hello_request_meta(m) -> bytes:
    return struct.pack("<HHQ", m["min_version"], m["max_version"], m["features"]) + lp16(m["client_name"].encode())


def hello_reply_meta(m) -> bytes:
    return (struct.pack("<HQBB", m["version"], m["features"], 1 if m["auth_required"] else 0, 0)
            + bytes.fromhex(m["server_nonce"])
            + struct.pack("<QHIIQ", m["max_value_bytes"], m["max_key_bytes"], m["max_batch_keys"],
                          m["max_meta_bytes"], m["capacity"])
            + lp16(m["node_id"].encode()))


def key_batch_meta(keys) -> bytes:
    return struct.pack("<I", len(keys)) + b"".join(lp16(k) for k in keys)


def put_meta(parent, entries, versions=None, ttl_seconds=None) -> bytes:
    out = b"" if parent is None else lp16(parent)
    out += struct.pack("<I", len(entries))
    # (key, length) or, with VALUE_CRC, (key, length, crc32c); per entry: key, then CRC, then version (VERSION)
    for n, (key, length, *crc) in enumerate(entries):
        out += struct.pack("<HQ", len(key), length) + key + b"".join(struct.pack("<I", c) for c in crc)
        if versions is not None:
            out += struct.pack("<Q", versions[n])
    if ttl_seconds is not None:   # TTL: one u32 after the last entry
        out += struct.pack("<I", ttl_seconds)
    return out


def status_list_meta(statuses) -> bytes:
    return struct.pack("<I", len(statuses)) + bytes(STATUSES[s] for s in statuses)


def get_reply_meta(entries, versions=None) -> bytes:
    return struct.pack("<I", len(entries)) + b"".join(
        struct.pack("<BQI", STATUSES[s], length, crc) + (b"" if versions is None else struct.pack("<Q", versions[n]))
        for n, (s, length, crc) in enumerate(entries))


def stats_meta(stats) -> bytes:
    out = struct.pack("<I", len(stats))
    for name, value in stats:
        out += struct.pack("<B", len(name)) + name.encode("ascii") + struct.pack("<q", value)
    return out


def error_meta(message: str) -> bytes:
    return lp16(message.encode())


def put_ttl_meta(parent, entries, ttl_seconds) -> bytes:
    return put_meta(parent, entries, ttl_seconds=ttl_seconds)


def scan_request_meta(m) -> bytes:
    return lp16(bytes.fromhex(m["prefix"])) + lp16(bytes.fromhex(m["cursor"])) + struct.pack("<I", m["limit"])


def scan_reply_meta(m) -> bytes:
    return (struct.pack("<BI", m["tiers"], len(m["entries"]))
            + b"".join(lp16(bytes.fromhex(e["key"])) + struct.pack("<Q", e["length"]) for e in m["entries"])
            + lp16(bytes.fromhex(m["cursor"])))


def info_reply_meta(m) -> bytes:
    return struct.pack("<I", len(m["entries"])) + b"".join(
        struct.pack("<BBQQQIIQQ", STATUSES[e["status"]], e["tier"], e["length"], e["age_ms"], e["ttl_ms"], e["pins"],
                    e["leases"], e["ns_budget"], e["ns_used"]) + lp16(bytes.fromhex(e["ns_prefix"]))
        for e in m["entries"])


# --- vectors ---------------------------------------------------------------------------------------
vectors = []


def add(name, description, opcode, flags, request_id, status, meta_obj, meta_bytes, payload=b"", **extra):
    v = {"name": name, "description": description,
         "hex": frame(opcode, flags, request_id, status, meta_bytes, payload).hex(),
         "frame": {"opcode": opcode, "flags": flags, "request_id": request_id, "status": status,
                   "meta": meta_obj, "payload": payload.hex()}}
    v.update(extra)
    vectors.append(v)


def h(b: bytes) -> str:
    return b.hex()


# HELLO
hello_req = {"min_version": 1, "max_version": 1, "features": 0, "client_name": "kvasir-py/0.1"}
add("hello_request", "HELLO request: the first frame on every connection. Client speaks versions 1..1, asks for no features.",
    "HELLO", [], 1, "OK", hello_req, hello_request_meta(hello_req))
hello_req2 = {"min_version": 1, "max_version": 3, "features": 0xFFFFFFFFFFFFFFFF, "client_name": "cli\u00e9nt"}
add("hello_request_range_and_features", "HELLO request offering versions 1..3 and every feature bit, with a non-ASCII UTF-8 name. The node picks version 1 and grants only the features it knows (0x1 VALUE_CRC, 0x2 TTL, 0x4 versions).",
    "HELLO", [], 7, "OK", hello_req2, hello_request_meta(hello_req2))
hello_rep = {"version": 1, "features": 0, "auth_required": False, "server_nonce": h(bytes(32)),
             "max_value_bytes": 64 << 20, "max_key_bytes": 512, "max_batch_keys": 8192,
             "max_meta_bytes": 8 << 20, "capacity": 1 << 30, "node_id": "127.0.0.1:7380"}
add("hello_reply_no_auth", "HELLO reply of a node with default limits and no auth key: auth_required 0, server nonce all zeros.",
    "HELLO", ["REPLY"], 1, "OK", hello_rep, hello_reply_meta(hello_rep))
hello_req_crc = {"min_version": 1, "max_version": 1, "features": FEATURES["VALUE_CRC"], "client_name": "kvasir-py/0.1"}
add("hello_request_value_crc", "HELLO request asking for feature 0x1 (VALUE_CRC): PUTs may then carry the writer's CRC-32C of each value.",
    "HELLO", [], 1, "OK", hello_req_crc, hello_request_meta(hello_req_crc))
hello_rep_crc = dict(hello_rep, features=FEATURES["VALUE_CRC"])
add("hello_reply_value_crc", "HELLO reply granting feature 0x1 (VALUE_CRC).",
    "HELLO", ["REPLY"], 1, "OK", hello_rep_crc, hello_reply_meta(hello_rep_crc))
hello_rep_auth = dict(hello_rep, auth_required=True, server_nonce=h(SERVER_NONCE), node_id="node-a")
add("hello_reply_auth", "HELLO reply of a node with an auth key: auth_required 1 and the server nonce (here 40..5f) for the AUTH exchange.",
    "HELLO", ["REPLY"], 1, "OK", hello_rep_auth, hello_reply_meta(hello_rep_auth))

# AUTH
auth_ctx = {"key": h(AUTH_KEY), "server_nonce": h(SERVER_NONCE), "client_nonce": h(CLIENT_NONCE)}
add("auth_request", "AUTH request: client nonce (60..7f) and client proof = HMAC-SHA256(key 00..1f, \"KVASIR-AUTH-1/client\" || server nonce || client nonce).",
    "AUTH", [], 2, "OK", {"client_nonce": h(CLIENT_NONCE), "client_proof": h(CLIENT_PROOF)},
    CLIENT_NONCE + CLIENT_PROOF, auth=auth_ctx)
add("auth_reply", "AUTH reply: server proof = HMAC-SHA256(key, \"KVASIR-AUTH-1/server\" || server nonce || client nonce). The client must check it.",
    "AUTH", ["REPLY"], 2, "OK", {"server_proof": h(SERVER_PROOF)}, SERVER_PROOF, auth=auth_ctx)
add("auth_request_wrong_key", "AUTH request whose proof was made with the wrong key (01..20): the node answers AUTH_FAILED and closes.",
    "AUTH", [], 2, "OK", {"client_nonce": h(CLIENT_NONCE), "client_proof": h(WRONG_PROOF)},
    CLIENT_NONCE + WRONG_PROOF, auth=dict(auth_ctx, key=h(WRONG_KEY)))

# PING
add("ping_request", "PING request carrying an 8-byte echo in the metadata.",
    "PING", [], 3, "OK", {"echo": h(b"ping-123")}, b"ping-123")
add("ping_reply", "PING reply: the same echo bytes back.",
    "PING", ["REPLY"], 3, "OK", {"echo": h(b"ping-123")}, b"ping-123")
add("ping_request_empty_max_id", "PING request with no echo and the largest request id (2^64-1).",
    "PING", [], 0xFFFFFFFFFFFFFFFF, "OK", {"echo": ""}, b"")
add("ping_reply_empty_max_id", "PING reply to the previous vector: request id 2^64-1 echoed.",
    "PING", ["REPLY"], 0xFFFFFFFFFFFFFFFF, "OK", {"echo": ""}, b"")

# PUT
v1, v3 = b"hello", b"\x00\x01\x02\x03\xff"
bin_key = bytes([0x00, 0xFF, 0x10])
entries = [(b"tok/0", len(v1)), (bin_key, 0), (b"tok/2", len(v3))]
add("put_request_plain", "PUT of three values, no chain: a text key, a binary key (00 ff 10) with a 0-byte value, and a third key. The payload is the values concatenated in entry order.",
    "PUT", [], 10, "OK", {"parent": None, "entries": [{"key": h(k), "value_length": n} for k, n in entries]},
    put_meta(None, entries), v1 + v3)
blocks = [bytes.fromhex("a1a1a1a1a1a1a1a1"), bytes.fromhex("b2b2b2b2b2b2b2b2"), bytes.fromhex("c3c3c3c3c3c3c3c3")]
vals = [b"KV-0", b"KV-1", b"KV-2"]
chain_entries = [(k, len(v)) for k, v in zip(blocks, vals)]
add("put_request_chain", "PUT with CHAIN: three 8-byte block hashes; block i continues block i-1, block 0 starts the chain.",
    "PUT", ["CHAIN"], 11, "OK", {"parent": None, "entries": [{"key": h(k), "value_length": n} for k, n in chain_entries]},
    put_meta(None, chain_entries), b"".join(vals))
parent = bytes.fromhex("c3c3c3c3c3c3c3c3")
more = [(bytes.fromhex("d4d4d4d4d4d4d4d4"), 3), (bytes.fromhex("e5e5e5e5e5e5e5e5"), 0)]
add("put_request_chain_parent", "PUT with CHAIN and CHAIN_PARENT: the metadata starts with the parent key (c3..c3) that entry 0 continues; entry 1 continues entry 0. Entry 1 has a 0-byte value.",
    "PUT", ["CHAIN", "CHAIN_PARENT"], 12, "OK",
    {"parent": h(parent), "entries": [{"key": h(k), "value_length": n} for k, n in more]},
    put_meta(parent, more), b"KV3")
add("put_request_chain_parent_follows", "PUT with CHAIN, CHAIN_PARENT and PARENT_FOLLOWS (connection granted feature 0x40): the metadata of put_request_chain_parent; the parent key (c3..c3) may be stored after entry 0 (the run of a chain striped over several connections that ends with it is still in flight): if it is absent when entry 0 is published, the node links entry 0 to it when it is published within 30 s.",
    "PUT", ["CHAIN", "CHAIN_PARENT", "PARENT_FOLLOWS"], 13, "OK",
    {"parent": h(parent), "entries": [{"key": h(k), "value_length": n} for k, n in more]},
    put_meta(parent, more), b"KV3", connection_features=FEATURES["LATE_PARENT"])
crc_entries = [(b"tok/0", len(v1), crc32c(v1)), (bin_key, 0, crc32c(b"")), (b"tok/2", len(v3), crc32c(v3))]
add("put_request_value_crc", "PUT with VALUE_CRC (feature 0x1 granted): the values of put_request_plain, each entry followed by the writer's CRC-32C of its value (u32; 0 for the 0-byte value).",
    "PUT", ["VALUE_CRC"], 14, "OK", {"parent": None, "entries": [{"key": h(k), "value_length": n, "crc32c": c} for k, n, c in crc_entries]},
    put_meta(None, crc_entries), v1 + v3)
crc_chain = [(k, n, crc32c(v)) for (k, n), v in zip(more, [b"KV3", b""])]
add("put_request_chain_parent_value_crc", "PUT with CHAIN, CHAIN_PARENT and VALUE_CRC: the parent key first, then entries whose CRC-32C follows the key.",
    "PUT", ["CHAIN", "CHAIN_PARENT", "VALUE_CRC"], 15, "OK",
    {"parent": h(parent), "entries": [{"key": h(k), "value_length": n, "crc32c": c} for k, n, c in crc_chain]},
    put_meta(parent, crc_chain), b"KV3")
add("put_request_ttl", "PUT with TTL (feature 0x2 granted): the entries of put_request_plain, then after the last entry a u32 time to live in seconds (3600) for every entry.",
    "PUT", ["TTL"], 16, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n} for k, n in entries], "ttl_seconds": 3600},
    put_ttl_meta(None, entries, 3600), v1 + v3)
add("put_request_value_crc_ttl", "PUT with VALUE_CRC and TTL: each entry's CRC-32C follows its key, the u32 time to live (90 s) follows the last entry.",
    "PUT", ["VALUE_CRC", "TTL"], 17, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n, "crc32c": c} for k, n, c in crc_entries], "ttl_seconds": 90},
    put_ttl_meta(None, crc_entries, 90), v1 + v3)
add("put_request_empty", "PUT of zero entries: legal, answered with an empty status list.",
    "PUT", [], 13, "OK", {"parent": None, "entries": []}, put_meta(None, []))
add("put_reply", "PUT reply to put_request_plain: one status byte per entry, all OK.",
    "PUT", ["REPLY"], 10, "OK", {"statuses": ["OK", "OK", "OK"]}, status_list_meta(["OK", "OK", "OK"]))
mixed = ["OK", "VALUE_TOO_LARGE", "INVALID_KEY", "OUT_OF_MEMORY", "TIER_FAILED"]
add("put_reply_mixed", "PUT reply with per-key failures: the connection stays open, the rejected values were read and dropped.",
    "PUT", ["REPLY"], 14, "OK", {"statuses": mixed}, status_list_meta(mixed))
add("put_reply_empty", "PUT reply to put_request_empty.",
    "PUT", ["REPLY"], 13, "OK", {"statuses": []}, status_list_meta([]))

# GET
get_keys = [b"tok/0", b"missing", bin_key, b""]
add("get_request", "GET of four keys: a stored key, an absent key, the binary key holding a 0-byte value, and an empty key (invalid).",
    "GET", [], 20, "OK", {"keys": [h(k) for k in get_keys]}, key_batch_meta(get_keys))
get_entries = [("OK", len(v1), crc32c(v1)), ("NOT_FOUND", 0, 0), ("OK", 0, crc32c(b"")), ("INVALID_KEY", 0, 0)]
add("get_reply", "GET reply: per key status, length and CRC32C (Castagnoli) of the stored value; length and CRC are 0 for a miss. The payload is the hit values concatenated in key order.",
    "GET", ["REPLY"], 20, "OK",
    {"entries": [{"status": s, "length": n, "crc32c": c} for s, n, c in get_entries]},
    get_reply_meta(get_entries), v1)
get_keys2 = [b"tok/2", b"tok/0"]
get_entries2 = [("OK", len(v3), crc32c(v3)), ("OK", len(v1), crc32c(v1))]
add("get_reply_two_hits", "GET reply with two hits: the payload is value 0 then value 1, split by the lengths.",
    "GET", ["REPLY"], 21, "OK",
    {"entries": [{"status": s, "length": n, "crc32c": c} for s, n, c in get_entries2]},
    get_reply_meta(get_entries2), v3 + v1)
add("get_request_two", "GET request answered by get_reply_two_hits.",
    "GET", [], 21, "OK", {"keys": [h(k) for k in get_keys2]}, key_batch_meta(get_keys2))

# Value versions (HELLO feature bit 0x4): on a connection granted the feature, PUT may carry VERSION and every GET
# reply entry ends with the value's version. "connection_features" is what HELLO granted on the connection the frame
# travels (a decoder needs it for the GET reply, whose header does not say).
hlc = [(1_764_000_000_000 << 16) | 1, (1_764_000_000_000 << 16) | 2]
add("put_request_version", "PUT with VERSION (connection granted feature 0x4): each entry ends with the value's u64 version, here hybrid-logical-clock versions (Unix ms << 16 | counter). The node keeps them; an older version than the key's newest is acknowledged but not stored.",
    "PUT", ["VERSION"], 15, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n, "version": v} for (k, n), v in zip(entries[:2], hlc)], "versioned": True},
    put_meta(None, entries[:2], hlc), v1, connection_features=FEATURE_VERSIONS)
add("put_request_version_chain", "PUT with CHAIN and VERSION: the flags combine; the version follows each entry's key.",
    "PUT", ["CHAIN", "VERSION"], 16, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n, "version": v} for (k, n), v in zip(chain_entries[:2], hlc)], "versioned": True},
    put_meta(None, chain_entries[:2], hlc), b"".join(vals[:2]), connection_features=FEATURE_VERSIONS)
all_features = FEATURES["VALUE_CRC"] | FEATURES["TTL"] | FEATURE_VERSIONS
add("put_request_value_crc_version_ttl", "PUT with VALUE_CRC, TTL and VERSION together (connection granted features 0x1, 0x2 and 0x4): each entry is the key, then the writer's CRC-32C (u32), then the version (u64); the u32 time to live (3600 s) follows the last entry.",
    "PUT", ["VALUE_CRC", "TTL", "VERSION"], 18, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n, "crc32c": c, "version": v} for (k, n, c), v in zip(crc_entries[:2], hlc)],
     "versioned": True, "ttl_seconds": 3600},
    put_meta(None, crc_entries[:2], hlc, 3600), v1, connection_features=all_features)
get_versions = [hlc[0], 0, hlc[1], 0]
add("get_reply_versions", "GET reply on a connection granted feature 0x4 (answer to get_request): every entry ends with the value's u64 version, 0 for a miss. 21 bytes per entry.",
    "GET", ["REPLY"], 20, "OK",
    {"entries": [{"status": s, "length": n, "crc32c": c, "version": v} for (s, n, c), v in zip(get_entries, get_versions)], "versioned": True},
    get_reply_meta(get_entries, get_versions), v1, connection_features=FEATURE_VERSIONS)

# CRC_TRAILER (HELLO feature bit 0x10): the metadata is a plain PUT's; in the payload each value is followed by its
# writer's CRC-32C (u32), so payload_length = the value lengths + 4 per entry. "trailer_crcs" lists them in entry order.
def trailer_payload(values) -> bytes:
    return b"".join(v + struct.pack("<I", crc32c(v)) for v in values)


add("put_request_crc_trailer", "PUT with CRC_TRAILER (connection granted feature 0x10): the entries of put_request_plain, no CRC in them; in the payload each value is followed by the writer's CRC-32C of it (u32; 0 after the 0-byte value), so the payload is 10 + 3 x 4 bytes.",
    "PUT", ["CRC_TRAILER"], 19, "OK", {"parent": None, "entries": [{"key": h(k), "value_length": n} for k, n in entries]},
    put_meta(None, entries), trailer_payload([v1, b"", v3]), connection_features=FEATURES["CRC_TRAILER"],
    trailer_crcs=[crc32c(v1), crc32c(b""), crc32c(v3)])
trailer_features = FEATURES["CRC_TRAILER"] | FEATURES["TTL"] | FEATURE_VERSIONS
add("put_request_chain_crc_trailer_version_ttl", "PUT with CHAIN, TTL, VERSION and CRC_TRAILER (connection granted features 0x2, 0x4 and 0x10): each entry is the key, then the version (u64); the u32 time to live (600 s) follows the last entry; each value in the payload is followed by its CRC-32C.",
    "PUT", ["CHAIN", "TTL", "VERSION", "CRC_TRAILER"], 20, "OK",
    {"parent": None, "entries": [{"key": h(k), "value_length": n, "version": v} for (k, n), v in zip(chain_entries[:2], hlc)],
     "versioned": True, "ttl_seconds": 600},
    put_meta(None, chain_entries[:2], hlc, 600), trailer_payload(vals[:2]), connection_features=trailer_features,
    trailer_crcs=[crc32c(v) for v in vals[:2]])

# EXISTS / REMOVE / PIN / UNPIN
for op, rid, keys, statuses, text in [
    ("EXISTS", 30, [b"tok/0", b"missing"], ["OK", "NOT_FOUND"], "EXISTS: OK means present, NOT_FOUND absent."),
    ("REMOVE", 31, [b"tok/0", b"missing"], ["OK", "NOT_FOUND"], "REMOVE: OK when the key was removed, NOT_FOUND when it was absent."),
    ("PIN", 32, [bin_key], ["OK"], "PIN: adds one pin; a pinned value is never evicted."),
    ("UNPIN", 33, [bin_key, b""], ["OK", "INVALID_KEY"], "UNPIN: removes one pin (OK even with no pins); an empty key is INVALID_KEY."),
]:
    add(op.lower() + "_request", f"{op} request. {text}", op, [], rid, "OK", {"keys": [h(k) for k in keys]}, key_batch_meta(keys))
    add(op.lower() + "_reply", f"{op} reply: count then one status byte per key.", op, ["REPLY"], rid, "OK",
        {"statuses": statuses}, status_list_meta(statuses))

# key management: SCAN / INFO / REMOVE_PREFIX (docs/protocol.md § Key management)
scan_req = {"prefix": h(b"tok/"), "cursor": "", "limit": 2}
add("scan_request", "SCAN request: keys under the prefix \"tok/\" from the start (empty cursor), at most 2 per page.",
    "SCAN", [], 70, "OK", scan_req, scan_request_meta(scan_req))
scan_rep = {"tiers": 0x01, "entries": [{"key": h(b"tok/0"), "length": 5}, {"key": h(b"tok/2"), "length": 5}], "cursor": h(b"tok/2")}
add("scan_reply", "SCAN reply: tiers listed (0x01 DRAM), 2 keys in unsigned byte order with their value lengths, and the cursor (the last key) because more may follow.",
    "SCAN", ["REPLY"], 70, "OK", scan_rep, scan_reply_meta(scan_rep))
scan_req_next = {"prefix": h(b"tok/"), "cursor": h(b"tok/2"), "limit": 2}
add("scan_request_cursor", "SCAN request for the next page: the cursor of scan_reply; lists keys sorting after it.",
    "SCAN", [], 71, "OK", scan_req_next, scan_request_meta(scan_req_next))
scan_rep_last = {"tiers": 0x01, "entries": [{"key": h(b"tok/3"), "length": 0}], "cursor": ""}
add("scan_reply_last", "SCAN reply of the last page: one key holding a 0-byte value and an empty cursor (the listing is complete).",
    "SCAN", ["REPLY"], 71, "OK", scan_rep_last, scan_reply_meta(scan_rep_last))
info_keys = [b"tenant-a/tok/0", b"tenant-a/missing", b""]
add("info_request", "INFO request: a key batch (a stored key, an absent key in the same namespace, an empty key).",
    "INFO", [], 72, "OK", {"keys": [h(k) for k in info_keys]}, key_batch_meta(info_keys))
ns = {"ns_budget": 1 << 20, "ns_used": 4096, "ns_prefix": h(b"tenant-a/")}
no_ns = {"ns_budget": 0, "ns_used": 0, "ns_prefix": ""}
zero = {"tier": 0, "length": 0, "age_ms": 0, "ttl_ms": 0, "pins": 0, "leases": 0}
info_rep = {"entries": [
    dict({"status": "OK", "tier": 1, "length": 5, "age_ms": 1500, "ttl_ms": 3598500, "pins": 1, "leases": 2}, **ns),
    dict({"status": "NOT_FOUND"}, **zero, **ns),
    dict({"status": "INVALID_KEY"}, **zero, **no_ns)]}
add("info_reply", "INFO reply: per key u8 status, u8 tier (1 DRAM), u64 length, u64 age_ms, u64 ttl_ms, u32 pins, u32 leases, u64 namespace budget, u64 namespace used, bytes16 namespace prefix. The NOT_FOUND entry still names its namespace; the INVALID_KEY entry is all zeros.",
    "INFO", ["REPLY"], 72, "OK", info_rep, info_reply_meta(info_rep))
add("remove_prefix_request", "REMOVE_PREFIX request: bytes16 prefix (\"tenant-a/\").",
    "REMOVE_PREFIX", [], 73, "OK", {"prefix": h(b"tenant-a/")}, lp16(b"tenant-a/"))
add("remove_prefix_reply", "REMOVE_PREFIX reply: u64 keys removed, u64 keys whose disk tombstone failed (still stored).",
    "REMOVE_PREFIX", ["REPLY"], 73, "OK", {"removed": 41, "failed": 1}, struct.pack("<QQ", 41, 1))

# STATS
add("stats_request", "STATS request: no metadata, no payload.", "STATS", [], 40, "OK", {}, b"")
stats = [("capacity_bytes", 1 << 30), ("allocated_bytes", 8192), ("live_bytes", 10), ("keys", 2),
         ("reservations", 0), ("leases", 0), ("pinned_keys", 1), ("hits", 3), ("misses", 1), ("puts", 5),
         ("removes", 1), ("evictions", 0), ("evicted_bytes", 0), ("out_of_memory", 0), ("utilisation_ppm", 9),
         ("connections", 1), ("connections_total", 4), ("bytes_in", 4242), ("bytes_out", 1717),
         ("protocol_errors", 0), ("auth_failures", 0), ("uptime_ms", 123456),
         ("requests_hello", 4), ("requests_auth", 0), ("requests_ping", 2), ("requests_put", 5),
         ("requests_get", 4), ("requests_exists", 2), ("requests_remove", 2), ("requests_pin", 1),
         ("requests_unpin", 2), ("requests_stats", 1)]
add("stats_reply", "STATS reply: count, then per stat a u8 name length, ASCII name and i64 value. Fractions are parts per million (_ppm).",
    "STATS", ["REPLY"], 40, "OK", {"stats": [{"name": n, "value": v} for n, v in stats]}, stats_meta(stats))

# shared-memory transport (docs/protocol.md § Shared memory)
add("shm_info_request", "SHM_INFO request: no metadata.", "SHM_INFO", [], 60, "OK", {}, b"")
shm_path, shm_token = "/dev/shm/kvasir-4242-0a1b2c3d.arena", bytes(range(0x40, 0x50))
add("shm_info_reply", "SHM_INFO reply: bytes16 arena path, u64 arena length, 16-byte token (also in PATH.token), u32 lease timeout in ms.",
    "SHM_INFO", ["REPLY"], 60, "OK", {"path": shm_path, "arena_length": 1 << 30, "token": h(shm_token), "lease_timeout_ms": 30000},
    lp16(shm_path.encode()) + struct.pack("<Q", 1 << 30) + shm_token + struct.pack("<I", 30000))
lease_keys = [b"tok/0", b"missing"]
add("lease_request", "LEASE request: a key batch, like GET.", "LEASE", [], 61, "OK", {"keys": [h(k) for k in lease_keys]}, key_batch_meta(lease_keys))
lease_entries = [("OK", 8192, 3, crc32c(b"abc"), 7), ("NOT_FOUND", 0, 0, 0, 0)]
add("lease_reply", "LEASE reply: count, then per key u8 status, u64 arena offset, u64 length, u32 CRC-32C, u64 lease id (zeros unless OK).",
    "LEASE", ["REPLY"], 61, "OK",
    {"entries": [{"status": st, "offset": o, "length": n, "crc32c": c, "lease_id": i} for st, o, n, c, i in lease_entries]},
    struct.pack("<I", 2) + b"".join(struct.pack("<BQQIQ", STATUSES[st], o, n, c, i) for st, o, n, c, i in lease_entries))
add("release_request", "RELEASE request: u32 count, then u64 lease ids.", "RELEASE", [], 62, "OK", {"ids": [7, 99]}, struct.pack("<IQQ", 2, 7, 99))
add("release_reply", "RELEASE reply: a status per id (NOT_FOUND for an id this connection does not hold).", "RELEASE", ["REPLY"], 62, "OK",
    {"statuses": ["OK", "NOT_FOUND"]}, status_list_meta(["OK", "NOT_FOUND"]))
alloc_entries = [(b"blk/0", 4096), (b"", 1)]
add("alloc_request", "ALLOC request: u32 count, then per key bytes16 key and u64 value length.", "ALLOC", [], 63, "OK",
    {"entries": [{"key": h(k), "value_length": n} for k, n in alloc_entries]},
    struct.pack("<I", 2) + b"".join(lp16(k) + struct.pack("<Q", n) for k, n in alloc_entries))
alloc_reply = [("OK", 12288, 8), ("INVALID_KEY", 0, 0)]
add("alloc_reply", "ALLOC reply: count, then per key u8 status, u64 arena offset to fill, u64 reservation id.", "ALLOC", ["REPLY"], 63, "OK",
    {"entries": [{"status": st, "offset": o, "reservation_id": i} for st, o, i in alloc_reply]},
    struct.pack("<I", 2) + b"".join(struct.pack("<BQQ", STATUSES[st], o, i) for st, o, i in alloc_reply))
add("commit_request", "COMMIT request: u32 count, then u64 reservation ids; the node computes each value's CRC-32C and publishes it.",
    "COMMIT", [], 64, "OK", {"ids": [8]}, struct.pack("<IQ", 1, 8))
# writes without the node's passes (feature 0x8, docs/protocol.md § Writes without the node's passes)
ARENA_SECRET = bytes(range(0xA0, 0xC0))     # the 32 bytes at offset arena_length of the arena file
ARENA_CHALLENGE = bytes(range(0xC0, 0xD0))  # this connection's, from SHM_INFO
ARENA_PROOF = hmac.new(ARENA_SECRET, b"KVASIR-SHM-1/alloc" + ARENA_CHALLENGE, hashlib.sha256).digest()
arena = {"secret": h(ARENA_SECRET), "challenge": h(ARENA_CHALLENGE), "proof": h(ARENA_PROOF)}
add("shm_info_reply_challenge", "SHM_INFO reply on a connection granted ARENA_PROOF (0x8): as shm_info_reply, then this connection's 16-byte challenge.",
    "SHM_INFO", ["REPLY"], 65, "OK",
    {"path": shm_path, "arena_length": 1 << 30, "token": h(shm_token), "lease_timeout_ms": 30000, "challenge": h(ARENA_CHALLENGE)},
    lp16(shm_path.encode()) + struct.pack("<Q", 1 << 30) + shm_token + struct.pack("<I", 30000) + ARENA_CHALLENGE,
    connection_features=FEATURES["ARENA_PROOF"], arena=arena)
add("alloc_request_ttl_mapped", "ALLOC with TTL and MAPPED: the entries, then u32 time to live in seconds, then the 32-byte arena proof "
    "HMAC-SHA256(secret, \"KVASIR-SHM-1/alloc\" || challenge); the node hands the space out without zeroing it.",
    "ALLOC", ["TTL", "MAPPED"], 66, "OK",
    {"entries": [{"key": h(b"blk/0"), "value_length": 131072}], "ttl_seconds": 600, "proof": h(ARENA_PROOF)},
    struct.pack("<I", 1) + lp16(b"blk/0") + struct.pack("<Q", 131072) + struct.pack("<I", 600) + ARENA_PROOF,
    connection_features=FEATURES["TTL"] | FEATURES["ARENA_PROOF"], arena=arena)
add("alloc_request_ttl", "ALLOC with TTL (feature 0x2; a client sends it only when 0x8 is granted too): the entries, then u32 seconds.",
    "ALLOC", ["TTL"], 67, "OK", {"entries": [{"key": h(b"blk/1"), "value_length": 4096}], "ttl_seconds": 0},
    struct.pack("<I", 1) + lp16(b"blk/1") + struct.pack("<Q", 4096) + struct.pack("<I", 0),
    connection_features=FEATURES["TTL"] | FEATURES["ARENA_PROOF"])
add("commit_request_crcs", "COMMIT with COMMIT_CRC: u32 count, the u64 reservation ids, then the writer's CRC-32C (u32) of each value, "
    "stored unchecked and checked before the value's first read or tier write.",
    "COMMIT", ["COMMIT_CRC"], 68, "OK", {"ids": [8, 9], "crcs": [crc32c(b"abc"), 0]},
    struct.pack("<IQQII", 2, 8, 9, crc32c(b"abc"), 0), connection_features=FEATURES["ARENA_PROOF"])
add("commit_request_chain", "COMMIT with CHAIN and CHAIN_PARENT (feature 0x20): the ids, in order, are one chain of blocks, the first "
    "continuing the key after the ids (u16 length, then the key), as a chained PUT's entries.",
    "COMMIT", ["CHAIN", "CHAIN_PARENT"], 69, "OK", {"ids": [10, 11, 12], "parent": h(b"blk/0")},
    struct.pack("<IQQQ", 3, 10, 11, 12) + lp16(b"blk/0"), connection_features=FEATURES["COMMIT_CHAIN"])
add("commit_request_crcs_chain", "COMMIT with COMMIT_CRC, CHAIN and CHAIN_PARENT (features 0x8 and 0x20): ids, then their CRCs, then the parent.",
    "COMMIT", ["CHAIN", "CHAIN_PARENT", "COMMIT_CRC"], 70, "OK", {"ids": [8, 9], "crcs": [crc32c(b"abc"), 0], "parent": h(b"p")},
    struct.pack("<IQQII", 2, 8, 9, crc32c(b"abc"), 0) + lp16(b"p"), connection_features=FEATURES["ARENA_PROOF"] | FEATURES["COMMIT_CHAIN"])
add("commit_reply", "COMMIT reply: a status per id.", "COMMIT", ["REPLY"], 64, "OK", {"statuses": ["OK"]}, status_list_meta(["OK"]))

# error replies
for name, op, rid, status, msg, text in [
    ("error_auth_failed", "AUTH", 2, "AUTH_FAILED", "authentication failed", "The client's proof did not match; the node closes the connection after this reply."),
    ("error_bad_frame", "PUT", 15, "BAD_FRAME", "payload length 9 differs from the sum of the value lengths 8", "A PUT whose payload length disagrees with its entries; closes the connection."),
    ("error_hello_required", "GET", 1, "HELLO_REQUIRED", "the first frame must be HELLO", "A GET sent before HELLO."),
    ("error_auth_required", "PUT", 2, "AUTH_REQUIRED", "this node requires AUTH before any other request", "A PUT sent after HELLO but before AUTH to a node with an auth key."),
    ("error_unsupported_version", "HELLO", 1, "UNSUPPORTED_VERSION", "client speaks versions 2..3; this node speaks 1", "HELLO whose version range does not include 1."),
    ("error_batch_too_large", "GET", 50, "BATCH_TOO_LARGE", "batch of 8193 keys exceeds the limit of 8192", "A key batch over the node's max_batch_keys."),
    ("error_empty_message", "PING", 51, "INTERNAL_ERROR", "", "An error reply with an empty message (message length 0)."),
]:
    add(name, f"Frame-level error reply ({status}). {text} Metadata: u16 message length + UTF-8 message; no payload.",
        op, ["REPLY"], rid, status, {"message": msg}, error_meta(msg))

# --- malformed -------------------------------------------------------------------------------------
malformed = []


def bad(name, description, raw: bytes, expected, layer):
    malformed.append({"name": name, "description": description, "layer": layer, "hex": raw.hex(),
                      "expected_status": expected})


ping = frame("PING", [], 3, "OK", b"ping")
bad("bad_magic", "Magic is \"KVSX\" instead of \"KVSR\".", b"KVSX" + ping[4:], "BAD_FRAME", "header")
bad("bad_version", "Header version 2.", ping[:4] + b"\x02" + ping[5:], "UNSUPPORTED_VERSION", "header")
bad("version_zero", "Header version 0.", ping[:4] + b"\x00" + ping[5:], "UNSUPPORTED_VERSION", "header")
bad("reserved_nonzero", "Reserved header field (offset 18) is 0x0001.", ping[:18] + b"\x01\x00" + ping[20:], "BAD_FRAME", "header")
bad("truncated_header", "Only 20 of the 32 header bytes. (On a socket the node sees the stream end inside a frame and closes without a reply.)", ping[:20], "BAD_FRAME", "header")
bad("meta_length_over_int32", "Metadata length 0x80000000 cannot be represented.", header(OPCODES["PING"], 0, 3, 0, 0x80000000, 0), "FRAME_TOO_LARGE", "header")
bad("payload_length_over_int64", "Payload length 2^63 cannot be represented.", header(OPCODES["PUT"], 0, 3, 0, 0, 1 << 63), "FRAME_TOO_LARGE", "header")
# message layer: the header is fine, the metadata or the lengths are not
good_put = put_meta(None, [(b"ab", 3)])
bad("frame_shorter_than_lengths", "Header declares 15 bytes of metadata and 3 of payload, the frame stops after 10 bytes of metadata. (On a socket the node waits for the rest until the frame timeout, or closes without a reply when the stream ends.)",
    header(OPCODES["PUT"], 0, 4, 0, len(good_put), 3) + good_put[:10], "BAD_FRAME", "message")
bad("key_length_past_metadata", "GET with one key whose length (200) points past the end of the metadata.",
    frame("GET", [], 5, "OK", struct.pack("<IH", 1, 200) + b"abc"), "BAD_FRAME", "message")
bad("batch_count_does_not_fit", "GET declaring 1000 keys in 9 bytes of metadata (each key needs at least 2 bytes).",
    frame("GET", [], 6, "OK", struct.pack("<I", 1000) + lp16(b"abc")), "BAD_FRAME", "message")
bad("batch_count_over_limit", "EXISTS declaring 8193 keys, over the default max_batch_keys of 8192 (checked before the count is compared with the metadata length).",
    frame("EXISTS", [], 7, "OK", struct.pack("<I", 8193)), "BATCH_TOO_LARGE", "message")
bad("key_batch_trailing_bytes", "REMOVE with one key followed by 2 stray bytes.",
    frame("REMOVE", [], 8, "OK", key_batch_meta([b"k"]) + b"\x00\x00"), "BAD_FRAME", "message")
bad("put_payload_length_mismatch", "PUT of one 3-byte value whose header declares a 4-byte payload.",
    header(OPCODES["PUT"], 0, 9, 0, len(good_put), 4) + good_put + b"abcd", "BAD_FRAME", "message")
bad("put_count_does_not_fit", "PUT declaring 2 entries but carrying one (each entry needs at least 10 bytes).",
    frame("PUT", [], 10, "OK", struct.pack("<I", 2) + good_put[4:], b"xyz"), "BAD_FRAME", "message")
bad("put_key_past_metadata", "PUT entry whose key length (9) points past the end of the metadata.",
    frame("PUT", [], 11, "OK", struct.pack("<IHQ", 1, 9, 3) + b"ab", b"xyz"), "BAD_FRAME", "message")
bad("put_parent_past_metadata", "PUT with CHAIN|CHAIN_PARENT whose parent key length (300) points past the end of the metadata.",
    frame("PUT", ["CHAIN", "CHAIN_PARENT"], 12, "OK", struct.pack("<H", 300) + good_put, b"xyz"), "BAD_FRAME", "message")
huge = (1 << 30) + 1
short_crc = put_meta(None, [(b"k", 3)])   # the entry without its CRC
bad("put_value_crc_entry_without_crc", "PUT with VALUE_CRC whose one entry ends after its key: the u32 CRC is missing.",
    frame("PUT", ["VALUE_CRC"], 3, "OK", short_crc, b"abc"), "BAD_FRAME", "message")
bad("put_crc_trailer_with_value_crc", "PUT with both VALUE_CRC and CRC_TRAILER: a value's CRC goes in its entry or after its bytes, never both.",
    frame("PUT", ["VALUE_CRC", "CRC_TRAILER"], 3, "OK", put_meta(None, [(b"k", 3, crc32c(b"abc"))]), trailer_payload([b"abc"])), "BAD_FRAME", "message")
bad("put_crc_trailer_payload_without_trailers", "PUT with CRC_TRAILER whose payload length is the sum of the value lengths alone: the 4-byte CRC after each value is not counted (3 + 4 expected).",
    frame("PUT", ["CRC_TRAILER"], 3, "OK", put_meta(None, [(b"k", 3)]), b"abc"), "BAD_FRAME", "message")
bad("put_ttl_without_seconds", "PUT with TTL whose metadata ends after its last entry: the u32 time to live is missing.",
    frame("PUT", ["TTL"], 3, "OK", put_meta(None, [(b"k", 3)]), b"abc"), "BAD_FRAME", "message")
bad("scan_limit_zero", "SCAN with a limit of 0.",
    frame("SCAN", [], 3, "OK", lp16(b"tok/") + lp16(b"") + struct.pack("<I", 0)), "BAD_FRAME", "message")
bad("scan_limit_over_batch", "SCAN with a limit of 8193, over the default max_batch_keys of 8192.",
    frame("SCAN", [], 3, "OK", lp16(b"tok/") + lp16(b"") + struct.pack("<I", 8193)), "BATCH_TOO_LARGE", "message")
bad("scan_prefix_too_long", "SCAN whose prefix is 513 bytes, longer than a key may be.",
    frame("SCAN", [], 3, "OK", lp16(b"p" * 513) + lp16(b"") + struct.pack("<I", 1)), "BAD_FRAME", "message")
bad("remove_prefix_trailing_bytes", "REMOVE_PREFIX with one stray byte after the prefix.",
    frame("REMOVE_PREFIX", [], 3, "OK", lp16(b"tenant-a/") + b"\x00"), "BAD_FRAME", "message")
bad("put_value_over_hard_limit", "PUT entry declaring a value of 2^30+1 bytes, over the hard limit of 1 GiB: FRAME_TOO_LARGE as soon as the metadata is read (only header and metadata are shown; the node never reads the payload).",
    header(OPCODES["PUT"], 0, 13, 0, len(put_meta(None, [(b"k", huge)])), huge) + put_meta(None, [(b"k", huge)]), "FRAME_TOO_LARGE", "message")
bad("hello_name_not_utf8", "HELLO whose client name is not valid UTF-8.",
    frame("HELLO", [], 1, "OK", struct.pack("<HHQ", 1, 1, 0) + lp16(b"\xff\xfe")), "BAD_FRAME", "message")
bad("hello_name_too_long", "HELLO whose client name is 257 bytes.",
    frame("HELLO", [], 1, "OK", struct.pack("<HHQ", 1, 1, 0) + lp16(b"n" * 257)), "BAD_FRAME", "message")
bad("hello_trailing_bytes", "HELLO with one stray byte after the client name.",
    frame("HELLO", [], 1, "OK", hello_request_meta(hello_req) + b"\x00"), "BAD_FRAME", "message")
bad("auth_short", "AUTH with 63 bytes of metadata instead of 64.",
    frame("AUTH", [], 2, "OK", (CLIENT_NONCE + CLIENT_PROOF)[:63]), "BAD_FRAME", "message")
# node layer: structurally valid frames that the node refuses as requests
bad("reply_flag_in_request", "A frame with the REPLY flag sent to the node.", frame("PING", ["REPLY"], 3, "OK", b""), "BAD_FRAME", "node")
bad("unknown_opcode", "Opcode 0x04 is not defined in v1.", header(0x04, 0, 3, 0, 0, 0), "UNKNOWN_OPCODE", "node")
bad("unknown_flag", "PUT with flag bit 0x0200, which is not defined.", header(OPCODES["PUT"], 0x0200, 3, 0, 4, 0) + struct.pack("<I", 0), "BAD_FRAME", "node")
bad("parent_follows_flag_without_feature", "PUT with CHAIN, CHAIN_PARENT and PARENT_FOLLOWS (0x0100) on a connection whose HELLO did not grant feature 0x40; the frame is otherwise well formed.",
    frame("PUT", ["CHAIN", "CHAIN_PARENT", "PARENT_FOLLOWS"], 3, "OK", put_meta(b"p", [(b"ab", 3)]), b"xyz"), "BAD_FRAME", "node")
bad("crc_trailer_flag_without_feature", "PUT with CRC_TRAILER (0x0080) on a connection whose HELLO did not grant feature 0x10; the frame is otherwise well formed (the value, then its CRC).",
    frame("PUT", ["CRC_TRAILER"], 3, "OK", put_meta(None, [(b"ab", 3)]), trailer_payload([b"xyz"])), "BAD_FRAME", "node")
bad("crc_trailer_flag_on_get", "GET with CRC_TRAILER: only PUT takes it.", frame("GET", ["CRC_TRAILER"], 3, "OK", key_batch_meta([b"k"])), "BAD_FRAME", "node")
bad("commit_crc_flag_on_put", "PUT with COMMIT_CRC (0x0040): only COMMIT takes it.", header(OPCODES["PUT"], 0x0040, 3, 0, 4, 0) + struct.pack("<I", 0), "BAD_FRAME", "node")
bad("mapped_flag_on_commit", "COMMIT with MAPPED (0x0020): only ALLOC takes it.", frame("COMMIT", ["MAPPED"], 3, "OK", struct.pack("<IQ", 1, 8)), "BAD_FRAME", "node")
bad("alloc_mapped_without_proof", "ALLOC with MAPPED whose metadata ends after its entries: the 32-byte proof is missing.",
    frame("ALLOC", ["MAPPED"], 3, "OK", struct.pack("<I", 1) + lp16(b"k") + struct.pack("<Q", 3)), "BAD_FRAME", "message")
bad("commit_crcs_short", "COMMIT with COMMIT_CRC carrying 2 ids but only one CRC.",
    frame("COMMIT", ["COMMIT_CRC"], 3, "OK", struct.pack("<IQQI", 2, 8, 9, 0)), "BAD_FRAME", "message")
bad("commit_chain_parent_missing", "COMMIT with CHAIN_PARENT whose metadata ends after the ids (no parent key).",
    frame("COMMIT", ["CHAIN", "CHAIN_PARENT"], 3, "OK", struct.pack("<IQ", 1, 8)), "BAD_FRAME", "message")
bad("value_crc_flag_on_get", "GET with the VALUE_CRC flag: only PUT takes it.", frame("GET", ["VALUE_CRC"], 3, "OK", key_batch_meta([b"k"])), "BAD_FRAME", "node")
bad("chain_flag_on_get", "GET with the CHAIN flag: only PUT takes flags.", frame("GET", ["CHAIN"], 3, "OK", key_batch_meta([b"k"])), "BAD_FRAME", "node")
bad("chain_parent_without_chain", "PUT with CHAIN_PARENT but not CHAIN.", frame("PUT", ["CHAIN_PARENT"], 3, "OK", lp16(b"p") + struct.pack("<I", 0)), "BAD_FRAME", "node")
bad("version_flag_without_feature", "PUT with VERSION on a connection whose HELLO did not grant feature 0x4 (versions).",
    frame("PUT", ["VERSION"], 3, "OK", put_meta(None, [(b"ab", 3)], [1]), b"xyz"), "BAD_FRAME", "node")
bad("version_flag_on_get", "GET with VERSION: only PUT takes it, even on a connection granted versions.",
    frame("GET", ["VERSION"], 3, "OK", key_batch_meta([b"k"])), "BAD_FRAME", "node")
bad("status_in_request", "A request carrying status 1 (NOT_FOUND).", frame("PING", [], 3, "NOT_FOUND", b""), "BAD_FRAME", "node")
bad("payload_on_get", "GET with a 1-byte payload: only PUT carries a payload.", frame("GET", [], 3, "OK", key_batch_meta([b"k"]), b"x"), "BAD_FRAME", "node")
bad("meta_over_node_limit", "Header declaring 8 MiB + 1 bytes of metadata, over the default max_meta_bytes (only the header is shown: the node answers before reading the metadata).",
    header(OPCODES["GET"], 0, 3, 0, (8 << 20) + 1, 0), "FRAME_TOO_LARGE", "node")
bad("stats_with_meta", "STATS carrying 1 byte of metadata.", frame("STATS", [], 3, "OK", b"\x00"), "BAD_FRAME", "node")
bad("ping_echo_too_long", "PING whose echo is 1025 bytes.", frame("PING", [], 3, "OK", b"e" * 1025), "FRAME_TOO_LARGE", "node")
bad("hello_version_range_excludes_1", "HELLO offering versions 2..3.", frame("HELLO", [], 1, "OK", struct.pack("<HHQ", 2, 3, 0) + lp16(b"c")), "UNSUPPORTED_VERSION", "node")

doc = {
    "version": 1,
    "comment": "Golden frames of Kvasir wire protocol v1 (docs/protocol.md). Generated once by tests/vectors/gen_frames.py; "
               "the committed file is the source of truth. All integers little-endian; hex strings are lowercase, "
               "'' for empty. Keys, nonces, proofs and payloads are hex. request_id is a u64 (may exceed 2^53).",
    "opcodes": OPCODES,
    "flags": FLAGS,
    "features": FEATURES,
    "statuses": STATUSES,
    "limits": {"header_bytes": 32, "max_key_bytes": 512, "default_max_value_bytes": 64 << 20,
               "hard_max_value_bytes": 1 << 30, "default_max_batch_keys": 8192, "default_max_meta_bytes": 8 << 20,
               "max_ping_bytes": 1024, "max_name_bytes": 256, "nonce_bytes": 32, "max_error_message_bytes": 1024},
    "vectors": vectors,
    "malformed": malformed,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"wrote {out}: {len(vectors)} vectors, {len(malformed)} malformed")
