#!/usr/bin/python3
"""Generates tests/vectors/transfer.json, the golden frames and blobs of the Kvasir transfer engine
wire protocol v1 (docs/transfer.md).

An independent implementation of docs/transfer.md (it uses neither the .NET nor the Python engine),
so the tests of both engines, which check the committed JSON against their codecs, cross-check all
three. The committed transfer.json is the source of truth: tests read it, they never regenerate it.
Run from anywhere:  /usr/bin/python3 tests/vectors/gen_transfer.py
"""
import hashlib
import hmac
import json
import os
import struct

MAGIC = b"KVTX"
VERSION = 1
OPCODES = {"HELLO": 0x01, "AUTH": 0x02, "WRITE": 0x10, "READ": 0x11, "NOTIFY": 0x12, "KV_READY": 0x13,
           "STAGED_WRITE": 0x14, "STAGED_READ": 0x15}
FLAGS = {"REPLY": 0x8000}
STATUSES = {"OK": 0, "NOT_ADVERTISED": 1, "OUT_OF_BOUNDS": 2, "TOO_LARGE": 3,
            "BAD_FRAME": 32, "UNSUPPORTED_VERSION": 33, "AUTH_REQUIRED": 34, "AUTH_FAILED": 35,
            "UNKNOWN_OPCODE": 36, "BAD_SESSION": 37, "FRAME_TOO_LARGE": 38}

AUTH_KEY = bytes(range(0x00, 0x20))
SERVER_NONCE = bytes(range(0x40, 0x60))
CLIENT_NONCE = bytes(range(0x60, 0x80))
WRONG_KEY = bytes(range(0x01, 0x21))


def proof(label: bytes, key: bytes) -> bytes:
    return hmac.new(key, label + SERVER_NONCE + CLIENT_NONCE, hashlib.sha256).digest()


CLIENT_PROOF = proof(b"KVASIR-XFER-1/client", AUTH_KEY)
SERVER_PROOF = proof(b"KVASIR-XFER-1/server", AUTH_KEY)
WRONG_PROOF = proof(b"KVASIR-XFER-1/client", WRONG_KEY)
NODE_CLIENT_PROOF = proof(b"KVASIR-AUTH-1/client", AUTH_KEY)  # the cache node's label: must not pass here

SESSION_ID = bytes(range(0xA0, 0xB0))
ENGINE_A = bytes(range(0x10, 0x20))
ENGINE_B = bytes(range(0x20, 0x30))
HOST_ID = bytes.fromhex("6b1f3c0e9a2d4f5e8c7b6a5948372615")
TOKEN = bytes(range(0xC0, 0xD0))


def header(opcode: int, flags: int, request_id: int, status: int, meta_len: int, payload_len: int) -> bytes:
    return MAGIC + struct.pack("<BBHQHHIQ", VERSION, opcode, flags, request_id, status, 0, meta_len, payload_len)


def frame(opcode, flags, request_id, status, meta, payload=b""):
    f = 0
    for name in flags:
        f |= FLAGS[name]
    return header(OPCODES[opcode], f, request_id, STATUSES[status], len(meta), len(payload)) + meta + payload


def hello_request_meta(m):
    return (struct.pack("<HHHH", m["protocol_version"], m["lane_index"], m["lane_count"], 0)
            + bytes.fromhex(m["session_id"]) + bytes.fromhex(m["engine_id"]) + bytes.fromhex(m["host_id"]))


def hello_reply_meta(m):
    return (struct.pack("<B3xI", 1 if m["auth_required"] else 0, m["max_slice"])
            + bytes.fromhex(m["engine_id"]) + bytes.fromhex(m["server_nonce"]))


def write_meta(m):
    notif = bytes.fromhex(m["notif"])
    return (struct.pack("<Q", m["advert_id"]) + bytes.fromhex(m["token"])
            + struct.pack("<QQQQII", m["window_offset"], m["transfer_length"], m["slice_offset"],
                          m["kv_tag"], m["kv_generation"], len(notif)) + notif)


def read_meta(m):
    return (struct.pack("<Q", m["advert_id"]) + bytes.fromhex(m["token"])
            + struct.pack("<QQQ", m["offset"], m["length"], 0))


def kv_ready_meta(m):
    return (struct.pack("<QII", m["kv_tag"], m["kv_generation"], 0) + struct.pack("<Q", m["advert_id"])
            + bytes.fromhex(m["token"]) + struct.pack("<QQ", m["capacity"], 0))


def advert_blob(m):
    flags = (1 if m.get("shm") else 0) | (2 if m.get("staging") else 0)
    out = (b"KVXA" + struct.pack("<BBH", 1, flags, 0) + bytes.fromhex(m["engine_id"])
           + struct.pack("<Q", m["advert_id"]) + bytes.fromhex(m["token"]) + struct.pack("<QQ", m["size"], m["ptr"]))
    if m.get("shm"):
        path = m["shm"]["path"].encode()
        out += struct.pack("<H", len(path)) + path + struct.pack("<Q", m["shm"]["file_offset"])
    if m.get("staging"):
        path = m["staging"]["path"].encode()
        out += struct.pack("<H", len(path)) + path + struct.pack("<II", m["staging"]["slot_bytes"], m["staging"]["slot_count"])
    return out


def staged_write_meta(m):
    return struct.pack("<QQ", m["staging_offset"], m["length"]) + write_meta(m["write"])


def staged_read_meta(m):
    return struct.pack("<Q", m["staging_offset"]) + read_meta(m["read"])


def endpoint_blob(m):
    fam = 6 if ":" in m["address"] else 4
    if fam == 4:
        addr = bytes(int(x) for x in m["address"].split(".")) + bytes(12)
    else:
        import ipaddress
        addr = ipaddress.IPv6Address(m["address"]).packed
    return b"KVXE" + struct.pack("<BBH", 1, fam, m["port"]) + addr + bytes.fromhex(m["engine_id"])


def h(b):
    return b.hex()


frames = []


def add(name, description, opcode, flags, request_id, status, meta_obj, meta_bytes, payload=b"", **extra):
    v = {"name": name, "description": description,
         "hex": frame(opcode, flags, request_id, status, meta_bytes, payload).hex(),
         "frame": {"opcode": opcode, "flags": flags, "request_id": request_id, "status": status,
                   "meta": meta_obj, "payload": payload.hex()}}
    v.update(extra)
    frames.append(v)


hello = {"protocol_version": 1, "lane_index": 2, "lane_count": 8, "session_id": h(SESSION_ID),
         "engine_id": h(ENGINE_A), "host_id": h(HOST_ID)}
add("hello_request", "HELLO on lane 2 of a session of 8 lanes (session a0..af) from engine 10..1f.",
    "HELLO", [], 1, "OK", hello, hello_request_meta(hello))
hello_rep = {"auth_required": False, "max_slice": 1 << 20, "engine_id": h(ENGINE_B), "server_nonce": h(bytes(32))}
add("hello_reply_no_auth", "HELLO reply of an engine without a key: auth_required 0, nonce all zeros, max_slice 1 MiB.",
    "HELLO", ["REPLY"], 1, "OK", hello_rep, hello_reply_meta(hello_rep))
hello_rep_auth = dict(hello_rep, auth_required=True, server_nonce=h(SERVER_NONCE), max_slice=64 << 20)
add("hello_reply_auth", "HELLO reply of an engine with a key: auth_required 1, server nonce 40..5f, max_slice 64 MiB.",
    "HELLO", ["REPLY"], 1, "OK", hello_rep_auth, hello_reply_meta(hello_rep_auth))
add("hello_reply_bad_session", "HELLO reply refusing a lane that does not fit its session (frame-level: the lane is closed).",
    "HELLO", ["REPLY"], 1, "BAD_SESSION", {}, b"")

auth_ctx = {"key": h(AUTH_KEY), "server_nonce": h(SERVER_NONCE), "client_nonce": h(CLIENT_NONCE)}
add("auth_request", "AUTH: client nonce 60..7f and HMAC-SHA256(key 00..1f, \"KVASIR-XFER-1/client\" || server nonce || client nonce).",
    "AUTH", [], 2, "OK", {"client_nonce": h(CLIENT_NONCE), "client_proof": h(CLIENT_PROOF)},
    CLIENT_NONCE + CLIENT_PROOF, auth=auth_ctx)
add("auth_reply", "AUTH reply: HMAC-SHA256(key, \"KVASIR-XFER-1/server\" || server nonce || client nonce).",
    "AUTH", ["REPLY"], 2, "OK", {"server_proof": h(SERVER_PROOF)}, SERVER_PROOF, auth=auth_ctx)
add("auth_request_wrong_key", "AUTH with a proof made with the wrong key (01..20): refused with AUTH_FAILED.",
    "AUTH", [], 2, "OK", {"client_nonce": h(CLIENT_NONCE), "client_proof": h(WRONG_PROOF)},
    CLIENT_NONCE + WRONG_PROOF, auth=dict(auth_ctx, key=h(WRONG_KEY)))
add("auth_request_node_label", "AUTH with a proof made for a cache node (label KVASIR-AUTH-1/client) with the right key: refused with AUTH_FAILED.",
    "AUTH", [], 2, "OK", {"client_nonce": h(CLIENT_NONCE), "client_proof": h(NODE_CLIENT_PROOF)},
    CLIENT_NONCE + NODE_CLIENT_PROOF, auth=auth_ctx)
add("auth_reply_failed", "AUTH reply to a wrong proof: AUTH_FAILED, no metadata; the lane is closed.",
    "AUTH", ["REPLY"], 2, "AUTH_FAILED", {}, b"")

payload = bytes((i * 7 + 3) & 0xFF for i in range(16))
w0 = {"advert_id": 5, "token": h(TOKEN), "window_offset": 4096, "transfer_length": 40, "slice_offset": 0,
      "kv_tag": 0, "kv_generation": 0, "notif": h(b"req-42 done")}
add("write_first_slice_with_notif", "WRITE: first slice (16 bytes at transfer offset 0) of a 40-byte transfer id 0x0102030405060708 at window offset 4096 of advertisement 5, carrying the notification 'req-42 done'.",
    "WRITE", [], 0x0102030405060708, "OK", w0, write_meta(w0), payload)
w1 = dict(w0, slice_offset=32, notif="")
add("write_last_slice", "WRITE: last slice (8 bytes at transfer offset 32) of the same transfer; no notification on later slices.",
    "WRITE", [], 0x0102030405060708, "OK", w1, write_meta(w1), payload[:8])
wkv = {"advert_id": 9, "token": h(TOKEN), "window_offset": 0, "transfer_length": 16, "slice_offset": 0,
       "kv_tag": 3, "kv_generation": 2, "notif": ""}
add("write_kv", "WRITE of a two-sided send_kv message: tag 3, generation 2 of the peer's KV_READY, 16 bytes in one slice.",
    "WRITE", [], 77, "OK", wkv, write_meta(wkv), payload)
wshm = {"advert_id": 11, "token": h(TOKEN), "window_offset": 0, "transfer_length": 1 << 20, "slice_offset": 0,
        "kv_tag": 0, "kv_generation": 0, "notif": ""}
add("write_shm_completion", "WRITE with no payload: a same-host initiator copied 1 MiB through shared memory and reports the whole transfer landed.",
    "WRITE", [], 78, "OK", wshm, write_meta(wshm))
add("write_reply", "WRITE reply: the slice at transfer offset 32 landed.",
    "WRITE", ["REPLY"], 0x0102030405060708, "OK", {"slice_offset": 32}, struct.pack("<Q", 32))
add("write_reply_out_of_bounds", "WRITE reply refusing a slice outside the window: OUT_OF_BOUNDS (the lane stays open; nothing was written).",
    "WRITE", ["REPLY"], 0x0102030405060708, "OUT_OF_BOUNDS", {"slice_offset": 0}, struct.pack("<Q", 0))
add("write_reply_not_advertised", "WRITE reply refusing an unknown advertisement or a wrong token: NOT_ADVERTISED.",
    "WRITE", ["REPLY"], 5, "NOT_ADVERTISED", {"slice_offset": 0}, struct.pack("<Q", 0))

r = {"advert_id": 5, "token": h(TOKEN), "offset": 8, "length": 16}
add("read_request", "READ of 16 bytes at window offset 8 of advertisement 5, transfer id 900.",
    "READ", [], 900, "OK", r, read_meta(r))
add("read_reply", "READ reply with the 16 bytes as payload.",
    "READ", ["REPLY"], 900, "OK", {}, b"", payload)
add("read_reply_not_advertised", "READ reply refusing a wrong token: NOT_ADVERTISED, no payload.",
    "READ", ["REPLY"], 900, "NOT_ADVERTISED", {}, b"")

sw = {"staging_offset": 3 << 20, "length": 1 << 20,
      "write": {"advert_id": 12, "token": h(TOKEN), "window_offset": 4096, "transfer_length": 5 << 20, "slice_offset": 2 << 20,
                "kv_tag": 0, "kv_generation": 0, "notif": ""}}
add("staged_write", "STAGED_WRITE: the 1 MiB at transfer offset 2 MiB of a 5 MiB write into GPU window 12 (at window offset 4096) is in slot 3 (byte 3 MiB) of the connection's staging file; no payload.",
    "STAGED_WRITE", [], 79, "OK", sw, staged_write_meta(sw))
sw0 = {"staging_offset": 0, "length": 7,
       "write": {"advert_id": 12, "token": h(TOKEN), "window_offset": 0, "transfer_length": 7, "slice_offset": 0,
                 "kv_tag": 0, "kv_generation": 0, "notif": h(b"req-42 done")}}
add("staged_write_with_notif", "STAGED_WRITE of a whole 7-byte write in slot 0, carrying the notification 'req-42 done'.",
    "STAGED_WRITE", [], 80, "OK", sw0, staged_write_meta(sw0))
add("staged_write_reply", "STAGED_WRITE reply: the slice at transfer offset 2 MiB is in the GPU window (its copy finished).",
    "STAGED_WRITE", ["REPLY"], 79, "OK", {"slice_offset": 2 << 20}, struct.pack("<Q", 2 << 20))
sr = {"staging_offset": 1 << 20, "read": {"advert_id": 12, "token": h(TOKEN), "offset": 8, "length": 1000}}
add("staged_read", "STAGED_READ: copy 1000 bytes at window offset 8 of GPU window 12 into slot 1 (byte 1 MiB) of the staging file.",
    "STAGED_READ", [], 901, "OK", sr, staged_read_meta(sr))
add("staged_read_reply", "STAGED_READ reply: the bytes are in the staging file (no metadata, no payload).",
    "STAGED_READ", ["REPLY"], 901, "OK", {}, b"")
add("staged_read_reply_out_of_bounds", "STAGED_READ reply refusing a staging range outside the staging file: OUT_OF_BOUNDS.",
    "STAGED_READ", ["REPLY"], 901, "OUT_OF_BOUNDS", {}, b"")

add("notify_request", "NOTIFY carrying 'free:req-42'.", "NOTIFY", [], 31, "OK", {"notif": h(b"free:req-42")}, b"free:req-42")
add("notify_reply", "NOTIFY reply.", "NOTIFY", ["REPLY"], 31, "OK", {}, b"")
kr = {"kv_tag": 3, "kv_generation": 2, "advert_id": 9, "token": h(TOKEN), "capacity": 1 << 20}
add("kv_ready_request", "KV_READY: tag 3 is ready for generation 2 in advertisement 9 with room for 1 MiB.",
    "KV_READY", [], 32, "OK", kr, kv_ready_meta(kr))
add("kv_ready_reply", "KV_READY reply.", "KV_READY", ["REPLY"], 32, "OK", {}, b"")
add("bad_frame_reply", "Frame-level error reply to a frame the engine could not parse; the lane is closed.",
    "WRITE", ["REPLY"], 0, "BAD_FRAME", {}, b"")

blobs = []
a = {"engine_id": h(ENGINE_B), "advert_id": 5, "token": h(TOKEN), "size": 65536, "ptr": 0x7F3A12345000}
blobs.append({"name": "advertisement", "kind": "advertisement", "description": "Advertisement of a 64 KiB window at 0x7f3a12345000.",
              "fields": a, "hex": h(advert_blob(a))})
ashm = dict(a, advert_id=11, shm={"path": "/dev/shm/kvasir-xfer-202122-1", "file_offset": 8192})
blobs.append({"name": "advertisement_shm", "kind": "advertisement", "description": "Advertisement of a window in a shared-memory file, starting 8192 bytes into it.",
              "fields": ashm, "hex": h(advert_blob(ashm))})
astg = dict(a, advert_id=12, size=1 << 30, ptr=0x7F0000000000,
            staging={"path": "/dev/shm/kvasir-xfer-stage-202122-7", "slot_bytes": 4 << 20, "slot_count": 4})
blobs.append({"name": "advertisement_staging", "kind": "advertisement",
              "description": "Advertisement of a 1 GiB GPU window to a same-host peer, with the connection's staging file of 4 slots of 4 MiB.",
              "fields": astg, "hex": h(advert_blob(astg))})
e4 = {"address": "127.0.0.1", "port": 12345, "engine_id": h(ENGINE_A)}
blobs.append({"name": "endpoint_ipv4", "kind": "endpoint", "description": "get_metadata() of an engine on 127.0.0.1:12345.",
              "fields": e4, "hex": h(endpoint_blob(e4))})
e6 = {"address": "::1", "port": 40000, "engine_id": h(ENGINE_B)}
blobs.append({"name": "endpoint_ipv6", "kind": "endpoint", "description": "get_metadata() of an engine on [::1]:40000.",
              "fields": e6, "hex": h(endpoint_blob(e6))})
note = {"tag": 0x0102030405060708, "group": 7}
blobs.append({"name": "layer_ready_note", "kind": "layer_ready",
              "description": "Per-layer pull: the NOTIFY bytes telling a decoder that layer group 7 of request tag 0x0102030405060708 is ready.",
              "fields": note, "hex": h(b"KVXL" + struct.pack("<B3xQI4x", 1, note["tag"], note["group"]))})

out = {"version": 1,
       "comment": "Golden frames and blobs of the Kvasir transfer engine protocol v1 (docs/transfer.md). Generated once by tests/vectors/gen_transfer.py; the committed file is the source of truth. Integers little-endian; hex lowercase, '' for empty.",
       "opcodes": OPCODES, "flags": FLAGS, "statuses": STATUSES,
       "frames": frames, "blobs": blobs}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transfer.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {len(frames)} frames and {len(blobs)} blobs to {path}")
