"""VALUE_CRC from Python (docs/protocol.md "PUT"): the writer's CRC-32C travels with each PUT value, the node
stores it without checksumming, and a value whose bytes do not match it is a miss."""
import json
import os

from kvasir import KvStore
from kvasir import protocol as P
from kvasir.connection import _Connection

VECTORS = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "tests", "vectors", "frames.json")))


def test_every_crc_in_a_value_crc_put_vector_is_the_crc_of_its_value():
    seen = 0
    for v in VECTORS["vectors"]:
        if "VALUE_CRC" not in v["frame"]["flags"]:
            continue
        payload, offset = bytes.fromhex(v["frame"]["payload"]), 0
        for e in v["frame"]["meta"]["entries"]:
            assert P.crc32c(payload[offset:offset + e["value_length"]]) == e["crc32c"]
            offset += e["value_length"]
            seen += 1
    assert seen >= 4


def test_a_store_with_value_crc_sends_it_and_the_values_read_back(own_node):
    s = KvStore(own_node.address, transport="tcp", value_crc=True, request_timeout=10)
    try:
        values = [bytes([i]) * (1000 + i) for i in range(5)] + [b""]
        keys = [f"vc/{i}".encode() for i in range(len(values))]
        assert s._put(keys, [[memoryview(v)] for v in values]) == [0] * len(values)
        assert [s.get(k) for k in keys] == values
        assert s.stats()["crc_mismatches"] == 0
    finally:
        s.close()


def test_a_put_whose_crc_does_not_match_its_bytes_is_a_miss_and_counted(own_node):
    host, port = own_node.address.rsplit(":", 1)
    conn = _Connection(host, int(port), None, 5.0, 10.0)
    try:
        assert conn.features == P.FEATURE_VALUE_CRC
        good, bad = b"g" * 5000, b"b" * 5000
        meta = P.encode_put_meta([(b"good", len(good), P.crc32c(good)), (b"bad", len(bad), P.crc32c(bad) ^ 1)])
        rid = conn.send_request(P.Opcode.PUT, meta, [memoryview(good), memoryview(bad)], len(good) + len(bad),
                                flags=int(P.Flag.VALUE_CRC))
        _, reply = conn.read_reply(rid, P.Opcode.PUT)
        assert [int(st) for st in reply.statuses] == [0, 0]
    finally:
        conn.close()
    s = KvStore(own_node.address, transport="tcp", request_timeout=10)
    try:
        assert s.get(b"good") == good
        assert s.get(b"bad") is None
        assert s.stats()["crc_mismatches"] == 1
    finally:
        s.close()


def test_a_put_with_value_crc_version_and_ttl_together_reads_back_with_its_versions(own_node):
    """VALUE_CRC, VERSION and TTL in one PUT (per entry: key, CRC, version; the TTL after the last entry)."""
    s = KvStore(own_node.address, transport="tcp", value_crc=True, request_timeout=10)
    try:
        values = [bytes([7 + i]) * (2000 + i) for i in range(3)]
        keys = [f"vcv/{i}".encode() for i in range(len(values))]
        stamps = [((1_764_000_000_000 << 16) | (i + 1)) for i in range(len(values))]
        assert s._put(keys, [[memoryview(v)] for v in values], ttl=3600, versions=stamps) == [0] * len(values)
        got = [0] * len(keys)
        codes, read = s._get(keys, [None] * len(keys), got)
        assert codes == [len(v) for v in values]   # a hit's code is its length
        assert [bytes(v) for v in read] == values
        assert got == stamps
        assert all(0 < i.ttl_ms <= 3600_000 for i in s.info(keys)), "the TTL after the last entry was not kept"
        # an older version does not replace the newer value
        assert s._put([keys[0]], [[memoryview(b"old")]], ttl=3600, versions=[stamps[0] - 1]) == [0]
        assert s.get(keys[0]) == values[0]
        assert s.stats()["crc_mismatches"] == 0
    finally:
        s.close()
