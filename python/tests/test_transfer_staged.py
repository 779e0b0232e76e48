"""GPU windows of a same-host peer through the connection's staging file (docs/transfer.md § GPU memory on the same
host), without a GPU: byte exactness around the slot size, acknowledgement only after the target's copy, reply order,
a failed copy, the staging bounds and the fallbacks to the lanes.

The same stand-ins as test_transfer_staging.py (its ``fake_gpu`` fixture: (ptr, size) pairs of some numpy arrays
are "GPU memory", and every device copy is a memcpy done later on another thread, in start order, as a CUDA stream
does), plus a fake ``cudaHostRegister`` (``_staging.pin``/``unpin``) that records what it registered. A piece
acknowledged before the target's copy finished shows up as wrong bytes; the real CUDA path runs in
test_transfer_cuda.py on a GPU machine."""
import logging
import os

import numpy as np
import pytest

from kvasir.transfer import Engine, _session, _staged, _staging, _wire, regions
from test_transfer_staging import _advertised as advertised, a_failed_copy_is_never_acknowledged, \
    fake_gpu, read_from_the_middle, replies_keep_request_order, write_into_the_middle  # noqa: F401 - fake_gpu: the fixture
from transfer_helpers import connected, poll_until_done, random_bytes

SLOT = 48 * 1024    # not the lanes' slice (64 KiB), so a piece count tells which path moved the bytes
SLOTS = 3


@pytest.fixture
def pins(monkeypatch):
    """A fake cudaHostRegister: records registrations; ``pins.refuse`` makes it fail with that reason."""
    state = {"pinned": [], "unpinned": [], "refuse": None}

    def pin(base, length):
        if state["refuse"]:
            return state["refuse"]
        state["pinned"].append((base, length))
        return None
    monkeypatch.setattr(_staging, "pin", pin)
    monkeypatch.setattr(_staging, "unpin", lambda base: state["unpinned"].append(base))
    return state


def engines(**kw):
    opts = dict(slice_bytes=64 * 1024, timeout=20, staging_slot_bytes=SLOT, staging_slots=SLOTS)
    opts.update(kw)
    return Engine("lo", 1, 2, 0, **opts), Engine("lo", 1, 2, 0, **opts)


@pytest.fixture
def pair(pins):
    a, b = engines()
    with a, b:
        ca, cb = connected(a, b)
        yield a, b, ca, cb


SIZES = [1, SLOT - 1, SLOT, SLOT + 1, 4 << 20]
IDS = ["1B", "slot-1", "slot", "slot+1", "4MiB"]


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src_gpu", [False, True], ids=["cpu-gpu", "gpu-gpu"])
def test_a_same_host_write_into_gpu_memory_goes_through_the_staging_file_and_is_acknowledged_once_copied(
        fake_gpu, pair, size, src_gpu):
    write_into_the_middle(fake_gpu, pair, size, src_gpu, True)
    a, b, ca, cb = pair
    assert a.shm_transfers == 1
    # one copy per piece into "GPU memory" (+ one out of it per piece for a GPU source); no lane ring buffer used
    assert fake_gpu.log["copies"] == -(-size // SLOT) * (2 if src_gpu else 1)
    assert fake_gpu.log["buffers"] == 0


def test_the_advertisement_names_the_connections_staging_file_with_its_slots(fake_gpu, pair):
    a, b, ca, cb = pair
    _, dst = fake_gpu(4096)
    stg = _wire.decode_advertisement(advertised(b, cb, dst)).staging
    assert stg is not None and (stg.slot_bytes, stg.slot_count) == (SLOT, SLOTS)
    assert os.stat(stg.path).st_size == SLOT * SLOTS and os.stat(stg.path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("dst_gpu", [False, True], ids=["gpu-cpu", "gpu-gpu"])
def test_a_same_host_read_of_gpu_memory_goes_through_the_staging_file_and_is_done_once_copied(
        fake_gpu, pair, size, dst_gpu):
    read_from_the_middle(fake_gpu, pair, size, True, dst_gpu)
    assert pair[0].shm_transfers == 1
    assert fake_gpu.log["copies"] == -(-size // SLOT) * (2 if dst_gpu else 1)
    assert fake_gpu.log["buffers"] == 0


def test_remote_offsets_and_a_vector_write_land_each_piece_at_its_place(fake_gpu, pair):
    a, b, ca, cb = pair
    dst_mem, dst = fake_gpu(1 << 20)
    blob = advertised(b, cb, dst, pad=0)
    parts = [random_bytes(n, n) for n in (SLOT + 7, 3, 2 * SLOT)]
    offsets = [5, 200_000, 600_000]
    mrs = [a.reg(p)[1] for p in parts]
    assert a.writev(ca, mrs, parts, [p.nbytes for p in parts], [blob] * 3, 3, notif=b"all",
                    remote_offset_list=offsets), a.last_error
    for p, off in zip(parts, offsets):
        assert np.array_equal(dst_mem[off:off + p.nbytes], p)
    assert b.wait_notifs(10) == [(cb, b"all")]
    assert a.shm_transfers == 3


def test_the_slots_bound_the_copies_in_flight_and_eight_concurrent_transfers_share_them(fake_gpu, pair):
    a, b, ca, cb = pair
    dst_mem, dst = fake_gpu(8 << 20)
    ok, dmr = b.reg(dst)
    assert ok, b.last_error
    data = [random_bytes(1 << 20, seed) for seed in range(8)]
    ids = []
    for i, d in enumerate(data):
        ok, blob = b.advertise(cb, dmr, dst[0] + (i << 20), 1 << 20)
        assert ok, b.last_error
        _, mr = a.reg(d)
        ok, tid = a.write_async(ca, mr, d, d.nbytes, blob)
        assert ok, a.last_error
        ids.append(tid)
    for tid in ids:
        assert poll_until_done(a, tid, "one of 8 concurrent staged writes")
    for i, d in enumerate(data):
        assert np.array_equal(dst_mem[i << 20:(i + 1) << 20], d)
    assert 1 < fake_gpu.log["most_in_flight"] <= SLOTS
    assert a.shm_transfers == 8


def test_replies_of_staged_pieces_keep_request_order_with_the_lanes_other_replies(fake_gpu, pins):
    """One lane carries staged writes into GPU memory (acknowledged after a late copy) and reads of host memory
    (answered at once unless ordered): the initiator closes a lane whose replies come out of order."""
    with Engine("lo", 1, 1, 0, staging_slot_bytes=SLOT, staging_slots=SLOTS) as a, \
            Engine("lo", 1, 1, 0, staging_slot_bytes=SLOT, staging_slots=SLOTS) as b:
        replies_keep_request_order(fake_gpu, a, b, 1 << 20)
        assert a.shm_transfers == 3


def test_a_failed_copy_into_gpu_memory_is_never_acknowledged(fake_gpu, pair):
    a_failed_copy_is_never_acknowledged(fake_gpu, *pair)
    assert pair[0].shm_transfers == 1


def test_a_staged_piece_outside_the_staging_file_or_the_window_is_refused_and_nothing_is_written(fake_gpu, pair):
    a, b, ca, cb = pair
    dst_mem, dst = fake_gpu(4096)
    blob = advertised(b, cb, dst, pad=0)
    adv = _wire.decode_advertisement(blob)
    session = a._session(ca)
    for staging_offset, length, window_offset, status in ((SLOT * SLOTS - 10, 11, 0, "OUT_OF_BOUNDS"),
                                                          (0, 100, 4000, "OUT_OF_BOUNDS")):
        t = _session.Transfer(a._new_id(), session, 1, 10, "a crafted piece")
        meta = _wire.encode_staged_write(_wire.StagedWrite(staging_offset, length, _wire.WriteSlice(
            adv.advert_id, adv.token, window_offset, length, 0)))
        op = _staged.StagedWriteOp(t, 0, 0, lambda slot: None)
        session.next_lane().request(op, _wire.encode_header(_wire.STAGED_WRITE, t.transfer_id, len(meta)) + meta)
        assert not t.wait()
        assert status in t.error
    t = _session.Transfer(a._new_id(), session, 1, 10, "a piece with a wrong token")
    meta = _wire.encode_staged_read(_wire.StagedRead(0, _wire.ReadSlice(adv.advert_id, bytes(16), 0, 10)))
    session.next_lane().request(_staged.StagedReadOp(t, memoryview(bytearray(10)), 0, 0, lambda slot: None),
                                _wire.encode_header(_wire.STAGED_READ, t.transfer_id, len(meta)) + meta)
    assert not t.wait() and "NOT_ADVERTISED" in t.error
    assert (dst_mem == 0xEE).all() and a.connection_error(ca) is None   # slice results: the lanes stay open


def test_when_registration_is_impossible_gpu_windows_go_over_the_lanes_and_the_reason_is_logged_once(
        fake_gpu, pins, caplog):
    pins["refuse"] = "cudaHostRegister of 147456 bytes failed: CUDA error 1"
    a, b = engines()
    with a, b, caplog.at_level(logging.WARNING, logger="kvasir"):
        ca, cb = connected(a, b)
        ca2, cb2 = connected(a, b)
        for conn, peer_conn in ((ca, cb), (ca2, cb2)):
            dst_mem, dst = fake_gpu(SLOT + 1 + 128)
            blob = advertised(b, peer_conn, dst)
            assert _wire.decode_advertisement(blob).staging is None
            data = random_bytes(SLOT + 1, 3)
            _, smr = a.reg(data)
            assert a.write(conn, smr, data, data.nbytes, blob), a.last_error
            assert np.array_equal(dst_mem[64:64 + SLOT + 1], data)
        assert a.shm_transfers == 0
        assert "CUDA error 1" in b.staging_refused
        logged = [r for r in caplog.records if "over the lanes" in r.getMessage()]
        assert len(logged) == 1 and "CUDA error 1" in logged[0].getMessage()
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"kvasir-xfer-{b.engine_id.hex()[:12]}")]


def test_an_initiator_that_cannot_open_the_staging_file_uses_the_lanes(fake_gpu, pair):
    a, b, ca, cb = pair
    dst_mem, dst = fake_gpu(SLOT * 2 + 128)
    blob = advertised(b, cb, dst)
    os.unlink(_wire.decode_advertisement(blob).staging.path)   # as if the initiator were on another host
    data = random_bytes(SLOT * 2, 4)
    _, smr = a.reg(data)
    assert a.write(ca, smr, data, data.nbytes, blob), a.last_error
    assert np.array_equal(dst_mem[64:64 + SLOT * 2], data)
    assert a.shm_transfers == 0 and fake_gpu.log["buffers"] > 0   # the lanes' pinned ring carried it


@pytest.mark.parametrize("why", ["option off", "another host"])
def test_no_staging_file_is_offered_with_the_option_off_or_to_a_peer_of_another_host(fake_gpu, pins, why):
    a, b = engines(gpu_staging=why != "option off")
    with a, b:
        if why == "another host":
            b.host_id = os.urandom(16)   # the peer's HELLO names a host other than ours
        ca, cb = connected(a, b)
        _, dst = fake_gpu(4096)
        assert _wire.decode_advertisement(advertised(b, cb, dst)).staging is None
    assert pins["pinned"] == []


def test_closing_the_engines_unregisters_and_removes_the_staging_file(fake_gpu, pins):
    a, b = engines()
    with a, b:
        ca, cb = connected(a, b)
        _, dst = fake_gpu(1 << 20)
        blob = advertised(b, cb, dst)
        path = _wire.decode_advertisement(blob).staging.path
        advertised(b, cb, dst)   # a second window on the connection: the same file
        assert _wire.decode_advertisement(advertised(b, cb, dst)).staging.path == path
        src_mem, src = fake_gpu(random_bytes(SLOT * 2, 8))
        _, smr = a.reg(src)
        assert a.write(ca, smr, src[0], SLOT * 2, blob), a.last_error
        assert len(pins["pinned"]) == 2   # the target's mapping, and the initiator's (its source is GPU memory)
    assert not os.path.exists(path)
    assert sorted(pins["unpinned"]) == sorted(base for base, _ in pins["pinned"])
