"""Golden vectors (tests/vectors/frames.json) against kvasir.protocol, plus auth and CRC-32C."""
import dataclasses
import enum
import json
import os

import pytest

from kvasir import protocol as p
from kvasir.errors import ProtocolError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "tests", "vectors", "frames.json"), encoding="utf-8") as _f:
    DOC = json.load(_f)


def to_json(obj, versioned=False):
    """Decoded protocol objects -> the JSON shape of frames.json (bytes as hex, enums by name). The value-version
    fields (feature 0x4: ``version`` per entry, ``versioned``) appear only on frames that carry versions."""
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    if dataclasses.is_dataclass(obj):
        versioned = getattr(obj, "versioned", versioned)
        versions_fields = isinstance(obj, (p.PutRequest, p.PutEntry, p.GetReply, p.GetEntry))
        no_crc = isinstance(obj, p.PutEntry) and obj.crc32c is None   # a PUT entry without VALUE_CRC has no crc32c field
        # the shared-memory extensions of feature 0x8 (and ALLOC's TTL) appear only on frames that carry them
        # (and COMMIT's chain parent, feature 0x20)
        optional = ("challenge", "crcs", "ttl_seconds", "proof", "parent") if isinstance(obj, (p.ShmInfoReply, p.IdList, p.AllocRequest)) else ()
        return {f.name: to_json(getattr(obj, f.name), versioned) for f in dataclasses.fields(obj)
                if (versioned or not versions_fields or f.name not in ("version", "versioned"))
                and not (no_crc and f.name == "crc32c") and not (f.name in optional and getattr(obj, f.name) is None)}
    if isinstance(obj, list):
        return [to_json(x, versioned) for x in obj]
    return obj


def from_json(opcode: str, is_reply: bool, status: str, meta: dict):
    """The JSON "meta" of a vector -> the protocol message object."""
    h = bytes.fromhex
    if is_reply and status != "OK":
        return p.ErrorReply(meta["message"])
    if opcode == "HELLO":
        if is_reply:
            return p.HelloReply(**dict(meta, server_nonce=h(meta["server_nonce"])))
        return p.HelloRequest(**meta)
    if opcode == "AUTH":
        if is_reply:
            return p.AuthReply(h(meta["server_proof"]))
        return p.AuthRequest(h(meta["client_nonce"]), h(meta["client_proof"]))
    if opcode == "PING":
        return p.Ping(h(meta["echo"]))
    if opcode == "STATS":
        return p.StatsReply([p.Stat(**s) for s in meta["stats"]]) if is_reply else p.StatsRequest()
    if opcode == "PUT" and not is_reply:
        parent = None if meta["parent"] is None else h(meta["parent"])
        entries = [p.PutEntry(h(e["key"]), e["value_length"], e.get("crc32c"), e.get("version", 0)) for e in meta["entries"]]
        if "ttl_seconds" in meta:
            return p.PutRequestTtl(parent, entries, meta.get("versioned", False), ttl_seconds=meta["ttl_seconds"])
        return p.PutRequest(parent, entries, meta.get("versioned", False))
    if opcode == "SCAN":
        if is_reply:
            return p.ScanReply(meta["tiers"], [p.ScanEntry(h(e["key"]), e["length"]) for e in meta["entries"]], h(meta["cursor"]))
        return p.ScanRequest(h(meta["prefix"]), h(meta["cursor"]), meta["limit"])
    if opcode == "INFO" and is_reply:
        return p.InfoReply([p.InfoEntry(**dict(e, status=p.WireStatus[e["status"]], ns_prefix=h(e["ns_prefix"]))) for e in meta["entries"]])
    if opcode == "REMOVE_PREFIX":
        return p.RemovePrefixReply(meta["removed"], meta["failed"]) if is_reply else p.RemovePrefixRequest(h(meta["prefix"]))
    if opcode == "SHM_INFO":
        if not is_reply:
            return p.ShmInfoRequest()
        return p.ShmInfoReply(meta["path"], meta["arena_length"], h(meta["token"]), meta["lease_timeout_ms"],
                              h(meta["challenge"]) if "challenge" in meta else None)
    if opcode == "LEASE" and is_reply:
        return p.LeaseReply([p.LeaseEntry(p.WireStatus[e["status"]], e["offset"], e["length"], e["crc32c"], e["lease_id"]) for e in meta["entries"]])
    if opcode in ("RELEASE", "COMMIT") and not is_reply:
        return p.IdList(meta["ids"], meta.get("crcs"), h(meta["parent"]) if "parent" in meta else None)
    if opcode == "ALLOC":
        if is_reply:
            return p.AllocReply([p.AllocReplyEntry(p.WireStatus[e["status"]], e["offset"], e["reservation_id"]) for e in meta["entries"]])
        return p.AllocRequest([p.AllocEntry(h(e["key"]), e["value_length"]) for e in meta["entries"]], meta.get("ttl_seconds"),
                              h(meta["proof"]) if "proof" in meta else None)
    if opcode == "GET" and is_reply:
        return p.GetReply([p.GetEntry(p.WireStatus[e["status"]], e["length"], e["crc32c"], e.get("version", 0)) for e in meta["entries"]],
                          meta.get("versioned", False))
    if is_reply:
        return p.StatusList([p.WireStatus[s] for s in meta["statuses"]])
    return p.KeyBatch([h(k) for k in meta["keys"]])


def test_tables_match_the_vectors():
    assert {o.name: int(o) for o in p.Opcode} == DOC["opcodes"]
    assert {n: int(f) for n, f in p.FLAG_NAMES} == DOC["flags"]
    assert p.FEATURES == DOC["features"]
    assert {s.name: int(s) for s in p.WireStatus} == DOC["statuses"]
    limits = DOC["limits"]
    assert limits["header_bytes"] == p.HEADER_SIZE
    assert limits["max_key_bytes"] == p.MAX_KEY_BYTES
    assert limits["hard_max_value_bytes"] == p.HARD_MAX_VALUE_BYTES
    assert limits["default_max_batch_keys"] == p.DEFAULT_MAX_BATCH_KEYS
    assert limits["default_max_meta_bytes"] == p.DEFAULT_MAX_META_BYTES


@pytest.mark.parametrize("vector", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_vector_decodes_and_reencodes(vector):
    raw = bytes.fromhex(vector["hex"])
    expected = vector["frame"]
    versions = bool(vector.get("connection_features", 0) & p.FEATURE_VERSIONS)
    crc_trailer = bool(vector.get("connection_features", 0) & p.FEATURE_CRC_TRAILER)
    frame = p.decode_frame(raw, versions=versions)
    h = frame.header
    assert p.Opcode(h.opcode).name == expected["opcode"]
    assert [n for n, f in p.FLAG_NAMES if h.flags & f] == expected["flags"]
    assert h.request_id == expected["request_id"]
    assert p.WireStatus(h.status).name == expected["status"]
    assert to_json(frame.meta) == expected["meta"]
    assert frame.payload.hex() == expected["payload"]
    if not h.is_reply:  # requests also pass the node's own checks (on a connection granted the vector's features)
        commit_chain = bool(vector.get("connection_features", 0) & p.FEATURE_COMMIT_CHAIN)
        late_parent = bool(vector.get("connection_features", 0) & p.FEATURE_LATE_PARENT)
        p.decode_frame(raw, request=True, versions=versions, commit_chain=commit_chain, crc_trailer=crc_trailer,
                       late_parent=late_parent)
        if late_parent:   # and fail on a connection that was not granted it
            with pytest.raises(p.ProtocolError, match="HELLO bit 0x40"):
                p.decode_frame(raw, request=True, versions=versions, crc_trailer=crc_trailer)
        if commit_chain and expected["opcode"] == "COMMIT":   # and fail on a connection that was not
            with pytest.raises(p.ProtocolError, match="HELLO bit 0x20"):
                p.decode_frame(raw, request=True, versions=versions)

    flags = 0
    for name in expected["flags"]:
        flags |= DOC["flags"][name]
    msg = from_json(expected["opcode"], "REPLY" in expected["flags"], expected["status"], expected["meta"])
    encoded = p.encode_frame(DOC["opcodes"][expected["opcode"]], flags, expected["request_id"],
                             DOC["statuses"][expected["status"]], msg, bytes.fromhex(expected["payload"]))
    assert encoded.hex() == vector["hex"]

    if "auth" in vector:
        a = vector["auth"]
        key, sn, cn = (bytes.fromhex(a[k]) for k in ("key", "server_nonce", "client_nonce"))
        if isinstance(frame.meta, p.AuthRequest):
            assert frame.meta.client_nonce == cn
            assert p.proofs_equal(frame.meta.client_proof, p.client_proof(key, sn, cn))
        else:
            assert p.proofs_equal(frame.meta.server_proof, p.server_proof(key, sn, cn))


@pytest.mark.parametrize("vector", DOC["malformed"], ids=[v["name"] for v in DOC["malformed"]])
def test_malformed_vector_is_rejected(vector):
    raw = bytes.fromhex(vector["hex"])
    expected = DOC["statuses"][vector["expected_status"]]
    layer = vector["layer"]
    if layer == "header":
        with pytest.raises(ProtocolError) as info:
            p.unpack_header(raw[:p.HEADER_SIZE])
    elif layer == "message":
        p.unpack_header(raw)  # the header alone is fine
        with pytest.raises(ProtocolError) as info:
            p.decode_frame(raw)
    else:
        assert layer == "node"
        with pytest.raises(ProtocolError) as info:
            p.decode_frame(raw, request=True)
    assert info.value.status == expected, str(info.value)


TRAILER_VECTORS = [v for v in DOC["vectors"] if "CRC_TRAILER" in v["frame"]["flags"]]


@pytest.mark.parametrize("vector", TRAILER_VECTORS, ids=[v["name"] for v in TRAILER_VECTORS])
def test_crc_trailer_vector_carries_each_values_crc_right_after_it(vector):
    frame = p.decode_frame(bytes.fromhex(vector["hex"]))
    pairs = p.split_put_payload(frame.meta, frame.payload, crc_trailer=True)
    assert [crc for _, crc in pairs] == vector["trailer_crcs"]
    assert [p.crc32c(value) for value, _ in pairs] == vector["trailer_crcs"]
    assert all(e.crc32c is None for e in frame.meta.entries)   # no CRC in the entries


def test_crc_trailer_needs_its_feature_on_a_request():
    raw = bytes.fromhex(TRAILER_VECTORS[0]["hex"])
    with pytest.raises(ProtocolError) as info:
        p.decode_frame(raw, request=True)
    assert info.value.status == p.WireStatus.BAD_FRAME and "0x10" in str(info.value)
    p.decode_frame(raw, request=True, crc_trailer=True)


def test_there_are_crc_trailer_vectors():
    assert len(TRAILER_VECTORS) >= 2


def test_auth_worked_example():
    key, sn, cn = bytes(range(0, 32)), bytes(range(0x40, 0x60)), bytes(range(0x60, 0x80))
    assert p.client_proof(key, sn, cn).hex() == "27de33637b47af13dc20b785206ce09e71e5367a9296552dd61e1c1a62867b1f"
    assert p.server_proof(key, sn, cn).hex() == "c95ea4df2d1f9043542c252f0da0831953aa23b24ddc47732701931a4fa82fc2"
    assert p.parse_auth_key("  " + key.hex().upper() + "\n") == key
    assert p.parse_auth_key(key) == key
    for bad in ("00" * 31, "zz" * 32, b"short"):
        with pytest.raises(ValueError):
            p.parse_auth_key(bad)


def test_crc32c():
    assert p.crc32c(b"123456789") == 0xE3069283
    assert p.crc32c(b"") == 0
    assert p.crc32c(b"hello") == 0x9A71BB4C
    assert p.crc32c(b"lo", p.crc32c(b"hel")) == 0x9A71BB4C


def test_arena_proof_vectors_hold_the_hmac_of_the_challenge_under_the_secret():
    with_arena = [v for v in DOC["vectors"] if "arena" in v]
    assert {v["name"] for v in with_arena} == {"shm_info_reply_challenge", "alloc_request_ttl_mapped"}
    for v in with_arena:
        a = v["arena"]
        secret, challenge = bytes.fromhex(a["secret"]), bytes.fromhex(a["challenge"])
        assert p.arena_proof(secret, challenge).hex() == a["proof"]
        assert p.arena_proof(secret, bytes(16)).hex() != a["proof"]   # the challenge counts
    alloc = p.decode_frame(bytes.fromhex(next(v for v in with_arena if v["name"] == "alloc_request_ttl_mapped")["hex"]), request=True)
    assert alloc.meta.proof.hex() == with_arena[0]["arena"]["proof"] and alloc.meta.ttl_seconds == 600
