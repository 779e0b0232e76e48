"""The transfer engine's codec against every golden vector of tests/vectors/transfer.json, both ways
(encode the fields -> the hex; decode the hex -> the fields), and its refusals of malformed input."""

import json
import os
import struct

import pytest

from kvasir import auth
from kvasir.transfer import _handshake, _wire, layers

VECTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "tests", "vectors", "transfer.json")
with open(VECTORS, encoding="utf-8") as _f:
    DATA = json.load(_f)
FRAMES = {f["name"]: f for f in DATA["frames"]}
BLOBS = {b["name"]: b for b in DATA["blobs"]}
H = bytes.fromhex


def test_the_codec_constants_match_the_vectors_tables():
    assert {name: code for code, name in _wire.OPCODE_NAMES.items()} == DATA["opcodes"]
    assert {name: code for code, name in _wire.STATUS_NAMES.items()} == DATA["statuses"]
    assert DATA["flags"] == {"REPLY": _wire.REPLY}


def _write_slice(m: dict) -> _wire.WriteSlice:
    return _wire.WriteSlice(m["advert_id"], H(m["token"]), m["window_offset"], m["transfer_length"], m["slice_offset"],
                            m["kv_tag"], m["kv_generation"], H(m["notif"]))


def _read_slice(m: dict) -> _wire.ReadSlice:
    return _wire.ReadSlice(m["advert_id"], H(m["token"]), m["offset"], m["length"])


def _write_fields(w: _wire.WriteSlice) -> dict:
    return {"advert_id": w.advert_id, "token": w.token.hex(), "window_offset": w.window_offset,
            "transfer_length": w.transfer_length, "slice_offset": w.slice_offset, "kv_tag": w.kv_tag,
            "kv_generation": w.kv_generation, "notif": w.notif.hex()}


def _read_fields(r: _wire.ReadSlice) -> dict:
    return {"advert_id": r.advert_id, "token": r.token.hex(), "offset": r.offset, "length": r.length}


def _encode_meta(opcode: str, reply: bool, status: str, m: dict) -> bytes:
    if opcode == "HELLO" and not reply:
        return _wire.encode_hello_request(_wire.HelloRequest(m["protocol_version"], m["lane_index"], m["lane_count"],
                                                             H(m["session_id"]), H(m["engine_id"]), H(m["host_id"])))
    if status != "OK" and opcode not in ("WRITE", "STAGED_WRITE"):
        return b""
    if opcode == "HELLO":
        return _wire.encode_hello_reply(_wire.HelloReply(m["auth_required"], m["max_slice"], H(m["engine_id"]),
                                                         H(m["server_nonce"])))
    if opcode == "AUTH":
        if reply:
            return H(m["server_proof"])
        return _wire.encode_auth_request(_wire.AuthRequest(H(m["client_nonce"]), H(m["client_proof"])))
    if opcode in ("WRITE", "STAGED_WRITE") and reply:
        return _wire.encode_write_reply(m["slice_offset"]) if m else b""
    if opcode == "WRITE":
        return _wire.encode_write(_write_slice(m))
    if opcode == "STAGED_WRITE":
        return _wire.encode_staged_write(_wire.StagedWrite(m["staging_offset"], m["length"], _write_slice(m["write"])))
    if opcode in ("READ", "STAGED_READ") and reply:
        return b""
    if opcode == "READ":
        return _wire.encode_read(_read_slice(m))
    if opcode == "STAGED_READ":
        return _wire.encode_staged_read(_wire.StagedRead(m["staging_offset"], _read_slice(m["read"])))
    if opcode == "NOTIFY":
        return b"" if reply else H(m["notif"])
    assert opcode == "KV_READY"
    return b"" if reply else _wire.encode_kv_ready(_wire.KvReady(m["kv_tag"], m["kv_generation"], m["advert_id"],
                                                                 H(m["token"]), m["capacity"]))


def _decode_meta(opcode: int, reply: bool, status: int, meta: bytes) -> dict:
    if status != _wire.OK and opcode not in (_wire.WRITE, _wire.STAGED_WRITE):
        assert meta == b""
        return {}
    if opcode == _wire.HELLO:
        if reply:
            r = _wire.decode_hello_reply(meta)
            return {"auth_required": r.auth_required, "max_slice": r.max_slice, "engine_id": r.engine_id.hex(),
                    "server_nonce": r.server_nonce.hex()}
        r = _wire.decode_hello_request(meta)
        return {"protocol_version": r.protocol_version, "lane_index": r.lane_index, "lane_count": r.lane_count,
                "session_id": r.session_id.hex(), "engine_id": r.engine_id.hex(), "host_id": r.host_id.hex()}
    if opcode == _wire.AUTH:
        if reply:
            return {"server_proof": _wire.decode_auth_reply(meta).hex()}
        r = _wire.decode_auth_request(meta)
        return {"client_nonce": r.client_nonce.hex(), "client_proof": r.client_proof.hex()}
    if opcode in (_wire.WRITE, _wire.STAGED_WRITE) and reply:
        return {"slice_offset": _wire.decode_write_reply(meta)} if meta else {}
    if opcode == _wire.WRITE:
        return _write_fields(_wire.decode_write(meta))
    if opcode == _wire.STAGED_WRITE:
        sw = _wire.decode_staged_write(meta)
        return {"staging_offset": sw.staging_offset, "length": sw.length, "write": _write_fields(sw.write)}
    if opcode in (_wire.READ, _wire.STAGED_READ) and reply:
        assert meta == b""
        return {}
    if opcode == _wire.READ:
        return _read_fields(_wire.decode_read(meta))
    if opcode == _wire.STAGED_READ:
        sr = _wire.decode_staged_read(meta)
        return {"staging_offset": sr.staging_offset, "read": _read_fields(sr.read)}
    if opcode == _wire.NOTIFY:
        return {} if reply else {"notif": meta.hex()}
    if reply:
        assert meta == b""
        return {}
    k = _wire.decode_kv_ready(meta)
    return {"kv_tag": k.kv_tag, "kv_generation": k.kv_generation, "advert_id": k.advert_id, "token": k.token.hex(),
            "capacity": k.capacity}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_encoding_the_vector_fields_gives_the_golden_bytes(name):
    v = FRAMES[name]
    f = v["frame"]
    reply = "REPLY" in f["flags"]
    meta = _encode_meta(f["opcode"], reply, f["status"], f["meta"])
    got = _wire.encode_frame(DATA["opcodes"][f["opcode"]], f["request_id"], meta, H(f["payload"]), reply=reply,
                             status=DATA["statuses"][f["status"]])
    assert got.hex() == v["hex"]


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_decoding_the_golden_bytes_gives_the_vector_fields(name):
    v = FRAMES[name]
    f = v["frame"]
    raw = H(v["hex"])
    h = _wire.decode_header(raw[:_wire.HEADER_BYTES], max_payload=_wire.MAX_SLICE_LIMIT)
    assert _wire.OPCODE_NAMES[h.opcode] == f["opcode"]
    assert h.is_reply == ("REPLY" in f["flags"])
    assert (h.request_id, _wire.status_name(h.status)) == (f["request_id"], f["status"])
    meta = raw[_wire.HEADER_BYTES:_wire.HEADER_BYTES + h.meta_length]
    payload = raw[_wire.HEADER_BYTES + h.meta_length:]
    assert len(payload) == h.payload_length and payload.hex() == f["payload"]
    assert _decode_meta(h.opcode, h.is_reply, h.status, meta) == f["meta"]


def test_auth_proofs_match_the_vectors_and_the_node_label_proof_is_not_a_transfer_proof():
    ctx = FRAMES["auth_request"]["auth"]
    key, sn, cn = H(ctx["key"]), H(ctx["server_nonce"]), H(ctx["client_nonce"])
    assert auth.labelled_proof(key, _handshake.CLIENT_LABEL, sn, cn).hex() == FRAMES["auth_request"]["frame"]["meta"]["client_proof"]
    assert auth.labelled_proof(key, _handshake.SERVER_LABEL, sn, cn).hex() == FRAMES["auth_reply"]["frame"]["meta"]["server_proof"]
    good = auth.labelled_proof(key, _handshake.CLIENT_LABEL, sn, cn)
    for bad in ("auth_request_wrong_key", "auth_request_node_label"):
        assert not auth.proofs_equal(H(FRAMES[bad]["frame"]["meta"]["client_proof"]), good)
    # the node's own proof is unchanged by the generalization
    assert auth.client_proof(key, sn, cn) == H(FRAMES["auth_request_node_label"]["frame"]["meta"]["client_proof"])


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_blobs_encode_and_decode_both_ways(name):
    v = BLOBS[name]
    m = v["fields"]
    if v["kind"] == "advertisement":
        shm, stg = m.get("shm"), m.get("staging")
        a = _wire.Advertisement(H(m["engine_id"]), m["advert_id"], H(m["token"]), m["size"], m["ptr"],
                                shm["path"] if shm else None, shm["file_offset"] if shm else 0,
                                _wire.Staging(stg["path"], stg["slot_bytes"], stg["slot_count"]) if stg else None)
        assert _wire.encode_advertisement(a).hex() == v["hex"]
        assert _wire.decode_advertisement(H(v["hex"])) == a
    elif v["kind"] == "layer_ready":   # a NOTIFY payload of the per-layer pull (test_transfer_layers.py checks it)
        assert layers.decode_note(H(v["hex"])) == (m["tag"], m["group"])
    else:
        e = _wire.Endpoint(m["address"], m["port"], H(m["engine_id"]))
        assert _wire.encode_endpoint(e).hex() == v["hex"]
        assert _wire.decode_endpoint(H(v["hex"])) == e


def _header_with(**change) -> bytes:
    raw = bytearray(H(FRAMES["notify_request"]["hex"])[:_wire.HEADER_BYTES])
    for offset, value in change.values():
        raw[offset:offset + len(value)] = value
    return bytes(raw)


@pytest.mark.parametrize("change,status,words", [
    ({"magic": (0, b"KVSR")}, _wire.BAD_FRAME, "magic"),
    ({"version": (4, b"\x02")}, _wire.BAD_FRAME, "version"),
    ({"flags": (6, b"\x01\x00")}, _wire.BAD_FRAME, "flag"),
    ({"reserved": (18, b"\x01\x00")}, _wire.BAD_FRAME, "reserved"),
    ({"meta": (20, struct.pack("<I", 65_601))}, _wire.FRAME_TOO_LARGE, "65600"),
    ({"payload": (24, struct.pack("<Q", 1025))}, _wire.FRAME_TOO_LARGE, "max_slice 1024"),
])
def test_a_bad_header_is_refused_with_the_status_the_spec_names(change, status, words):
    with pytest.raises(_wire.FrameError, match=words) as e:
        _wire.decode_header(_header_with(**change), max_payload=1024)
    assert e.value.status == status


def test_metadata_of_the_wrong_length_or_with_reserved_bits_is_a_bad_frame():
    hello = H(FRAMES["hello_request"]["hex"])[_wire.HEADER_BYTES:]
    write = H(FRAMES["write_first_slice_with_notif"]["hex"])[_wire.HEADER_BYTES:_wire.HEADER_BYTES + 64 + 11]
    cases = [(_wire.decode_hello_request, hello[:-1]), (_wire.decode_hello_request, hello[:6] + b"\x01" + hello[7:]),
             (_wire.decode_write, write[:63]), (_wire.decode_write, write + b"x"),
             (_wire.decode_read, bytes(47)), (_wire.decode_kv_ready, bytes(56)), (_wire.decode_auth_request, bytes(63)),
             (_wire.decode_staged_write, bytes(79)), (_wire.decode_staged_write, bytes(8) + bytes(8) + write),
             (_wire.decode_staged_read, bytes(55)), (_wire.decode_staged_read, bytes(8) + bytes(48))]
    for decode, meta in cases:
        with pytest.raises(_wire.FrameError) as e:
            decode(meta)
        assert e.value.status == _wire.BAD_FRAME, decode.__name__


@pytest.mark.parametrize("blob,words", [
    (b"", "0 bytes"), (b"KVXB" + bytes(60), "magic"), (b"KVXA\x02" + bytes(59), "version"),
    (b"KVXA\x01\x00\x00\x00" + bytes(56) + b"x", "65 bytes"), (b"KVXA\x01\x04" + bytes(58), "flags"),
])
def test_a_bad_advertisement_blob_is_refused_by_name(blob, words):
    with pytest.raises(ValueError, match=words):
        _wire.decode_advertisement(blob)


def test_a_bad_staging_extension_is_refused_by_name():
    good = H(BLOBS["advertisement_staging"]["hex"])
    for blob, words in ((good[:-1], "slot layout"), (good + b"x", "expected"), (good[:66], "inside its path"),
                        (good[:-8] + bytes(8), "0 slots of 0 bytes")):
        with pytest.raises(ValueError, match=words):
            _wire.decode_advertisement(blob)


def test_a_bad_endpoint_blob_is_refused_by_name():
    good = H(BLOBS["endpoint_ipv4"]["hex"])
    for blob, words in ((good[:-1], "39 bytes"), (b"KVXF" + good[4:], "magic"), (good[:5] + b"\x05" + good[6:], "family")):
        with pytest.raises(ValueError, match=words):
            _wire.decode_endpoint(blob)
