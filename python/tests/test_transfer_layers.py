"""Per-layer pull (docs/transfer.md § Per-layer pull): a decode engine reads each layer group of a prefill engine's
KV buffer as soon as the prefill announces it, over real TCP lanes and through a same-host shared file."""
import json
import os
import time

import numpy as np
import pytest

from kvasir.transfer import Engine, layers
from transfer_helpers import connected, random_bytes

SIZES = [1, 65535, 65537, 200_000]   # around the 64 KiB slice of the engines below
SLICE = 1 << 16


def _producer_buffer(prefill: Engine, conn: int, shared: bool):
    total = sum(SIZES)
    if shared:
        ok, mr, kv = prefill.alloc_shared(total)
        assert ok, prefill.last_error
    else:
        kv = np.zeros(total, dtype=np.uint8)
        ok, mr = prefill.reg(kv)
        assert ok, prefill.last_error
    ok, blob = prefill.advertise(conn, mr, kv.ctypes.data, total)
    assert ok, prefill.last_error
    return kv, blob


def _decoder_groups(decode: Engine, blob: bytes):
    local = np.zeros(sum(SIZES), dtype=np.uint8)
    ok, mr = decode.reg(local)
    assert ok, decode.last_error
    groups, at = [], 0
    for n in SIZES:
        groups.append((mr, local.ctypes.data + at, n, blob, at))
        at += n
    return local, groups


def _span(g):
    start = sum(SIZES[:g])
    return slice(start, start + SIZES[g])


@pytest.mark.parametrize("shared", [False, True], ids=["tcp", "shm"])
def test_the_decoder_pulls_each_layer_group_when_the_prefill_announces_it_and_not_before(shared):
    # The decoder connects to the prefill, so the prefill (the side that accepted) knows both are on one host and
    # offers its shared file in the advertisement.
    with Engine("lo", 2, 2, 0, slice_bytes=SLICE) as decode, Engine("lo", 2, 2, 0, slice_bytes=SLICE) as prefill:
        dconn, pconn = connected(decode, prefill)
        kv, blob = _producer_buffer(prefill, pconn, shared)
        local, groups = _decoder_groups(decode, blob)
        ok, pull = decode.pull_layers(dconn, 42, groups)
        assert ok, decode.last_error
        data = random_bytes(sum(SIZES), 7)
        order = [2, 0, 3, 1]
        for i, g in enumerate(order):
            kv[_span(g)] = data[_span(g)]   # the prefill computed this group's KV
            assert prefill.notify_layer_ready(pconn, 42, g), prefill.last_error
            assert pull.wait(g, timeout=20), pull.error or f"layer group {g} did not land within 20 s"
            assert np.array_equal(local[_span(g)], data[_span(g)])
            assert pull.landed() == sorted(order[:i + 1])
            for later in order[i + 1:]:   # not announced yet: nothing read
                assert not local[_span(later)].any(), f"group {later} was read before it was announced"
        assert pull.wait_all(timeout=20) and pull.error is None
        assert np.array_equal(local, data)
        assert decode.get_notifs() == [], "layer-ready notes of a pull were listed as notifications"
        assert decode.shm_transfers == (len(SIZES) if shared else 0)
        pull.close()


def test_notes_that_arrive_before_the_pull_are_taken_by_it_and_other_notifications_stay_listed():
    with Engine("lo", 1, 2, 0, slice_bytes=SLICE) as decode, Engine("lo", 1, 2, 0, slice_bytes=SLICE) as prefill:
        dconn, pconn = connected(decode, prefill)
        kv, blob = _producer_buffer(prefill, pconn, False)
        kv[:] = random_bytes(kv.size, 3)
        for g in (1, 0):
            assert prefill.notify_layer_ready(pconn, 9, g), prefill.last_error
        assert prefill.notify_layer_ready(pconn, 10, 0), prefill.last_error   # another request's note
        assert prefill.send_notif(pconn, b"plain"), prefill.last_error
        deadline = time.monotonic() + 20
        while len(decode._notifs) < 4:   # all four notifications arrived before the pull opens
            assert time.monotonic() < deadline, "timed out waiting for the four notifications"
            time.sleep(0.01)
        local, groups = _decoder_groups(decode, blob)
        ok, pull = decode.pull_layers(dconn, 9, groups)
        assert ok, decode.last_error
        assert pull.wait(0, 20) and pull.wait(1, 20), pull.error
        assert np.array_equal(local[:SIZES[0] + SIZES[1]], kv[:SIZES[0] + SIZES[1]])
        assert not pull.wait(2, timeout=0.2) and pull.error is None   # not announced: a timeout, the pull goes on
        assert [n for _, n in decode.get_notifs()] == [layers.encode_note(10, 0), b"plain"]


def test_a_pull_fails_with_a_reason_when_the_prefill_dies_or_names_a_group_past_the_list():
    with Engine("lo", 1, 2, 0) as decode:
        prefill = Engine("lo", 1, 2, 0)
        dconn, pconn = connected(decode, prefill)
        kv, blob = _producer_buffer(prefill, pconn, False)
        local, groups = _decoder_groups(decode, blob)
        ok, pull = decode.pull_layers(dconn, 5, groups)
        assert ok, decode.last_error
        assert prefill.notify_layer_ready(pconn, 5, len(SIZES)), prefill.last_error
        assert not pull.wait(0, timeout=20)
        assert "announced layer group 4" in pull.error and "has 4 groups" in pull.error
        pull.close()
        ok, pull = decode.pull_layers(dconn, 6, groups)
        assert ok, decode.last_error
        prefill.close()
        assert not pull.wait(0, timeout=20)
        assert pull.error and f"connection {dconn}" in pull.error, pull.error


def test_bad_pull_arguments_are_refused_before_anything_is_read():
    with Engine("lo", 1, 1, 0) as decode, Engine("lo", 1, 1, 0) as prefill:
        dconn, pconn = connected(decode, prefill)
        _, blob = _producer_buffer(prefill, pconn, False)
        local, groups = _decoder_groups(decode, blob)
        mr = groups[0][0]
        for bad, words in (([], "at least one group"),
                           ([(mr, local.ctypes.data, local.size + 1, blob)], "outside"),
                           ([(mr, local.ctypes.data, 10, blob[:10])], "advertisement"),
                           ([(mr, local.ctypes.data)], "not 2 items")):
            assert decode.pull_layers(dconn, 1, bad) == (False, None)
            assert words in decode.last_error, decode.last_error
        assert decode.pull_layers(dconn, 0, groups) == (False, None) and "tag" in decode.last_error
        ok, pull = decode.pull_layers(dconn, 1, groups)
        assert ok
        assert decode.pull_layers(dconn, 1, groups) == (False, None) and "already has" in decode.last_error
        pull.close()
        assert decode.pull_layers(dconn, 1, groups)[0], decode.last_error   # closed: the tag is free again


def test_the_layer_ready_note_matches_the_golden_vector():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "vectors", "transfer.json")
    with open(path, encoding="utf-8") as f:
        v = {b["name"]: b for b in json.load(f)["blobs"]}["layer_ready_note"]
    tag, group = v["fields"]["tag"], v["fields"]["group"]
    assert layers.encode_note(tag, group).hex() == v["hex"]
    assert layers.decode_note(bytes.fromhex(v["hex"])) == (tag, group)
    assert layers.decode_note(b"KVXL" + bytes(20)) is None   # tag 0: an ordinary notification
