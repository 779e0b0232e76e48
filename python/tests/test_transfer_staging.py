"""GPU memory over the lanes (docs/transfer.md § GPU memory), without a GPU: the slices' pinned ring, the copies'
completion before a slice is acknowledged, the replies' order and a failed copy. The engines here are same-host peers
with ``gpu_staging=False``, so GPU windows go over the lanes (the staging file's path is test_transfer_staged.py's).

These tests stand in for CUDA twice, and only here: ``regions.address_device`` says that (ptr, size) pairs of some
numpy arrays are "GPU memory" (so the engine treats them as a CUDA region and never reads or writes them from the CPU
itself), and ``_staging.make_copier`` gives a copier that memcpys on a thread of its own, later (each copy waits
DELAY first), in the order the copies were started, as a CUDA stream does. A slice acknowledged before its copy
finished, or a ring buffer refilled while its copy is pending, shows up as wrong bytes. The real CUDA path runs in
test_transfer_cuda.py on a GPU machine."""
import ctypes
import queue
import threading
import time

import numpy as np
import pytest

from kvasir.transfer import Engine, _staging, regions
from transfer_helpers import connected, poll_until_done, random_bytes, wait_connection_closed

SLICE = 64 * 1024
DELAY = 0.002


class FakeCopier(_staging.Copier):
    """A memcpy done later, in start order, on its own thread (the test's stand-in for a CUDA stream)."""

    def __init__(self, device, log):
        self.device = device
        self._log = log
        self._jobs: "queue.Queue" = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def host_buffer(self, n):
        buf = np.zeros(n, dtype=np.uint8)
        self._log["buffers"] += 1
        return buf, buf.ctypes.data

    def start(self, dst, src, n):
        done = threading.Event()
        with self._lock:
            self._pending += 1
            self._log["most_in_flight"] = max(self._log["most_in_flight"], self._pending)
        self._jobs.put((dst, src, n, done))
        return done

    def _run(self):
        while True:
            dst, src, n, done = self._jobs.get()
            time.sleep(self._log["delay"])
            if self._log["fail"]:
                done.failed = True
            else:
                ctypes.memmove(dst, src, n)
                self._log["copies"] += 1
            with self._lock:
                self._pending -= 1
            done.set()

    def wait(self, started):
        if not started.wait(10):
            raise regions.TransferError("the fake copy did not finish in 10 s")
        if getattr(started, "failed", False):
            raise regions.TransferError("fake device copy failed")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Returns gpu(nbytes) -> (host array standing for GPU memory, its (ptr, size) pair), and the copiers' log."""
    ranges = []
    log = {"buffers": 0, "copies": 0, "most_in_flight": 0, "fail": False, "delay": DELAY}
    monkeypatch.setattr(regions, "address_device",
                        lambda ptr: next((0 for base, n in ranges if base <= ptr < base + n), None))
    monkeypatch.setattr(_staging, "make_copier", lambda device: FakeCopier(device, log))

    def gpu(data):
        mem = np.array(data, dtype=np.uint8) if not isinstance(data, int) else np.full(data, 0xEE, dtype=np.uint8)
        ranges.append((mem.ctypes.data, mem.nbytes))
        return mem, (mem.ctypes.data, mem.nbytes)
    gpu.log = log
    return gpu


@pytest.fixture
def pair():
    with Engine("lo", 1, 2, 0, slice_bytes=SLICE, timeout=20, gpu_staging=False) as a, Engine("lo", 1, 2, 0, slice_bytes=SLICE, timeout=20, gpu_staging=False) as b:
        ca, cb = connected(a, b)
        yield a, b, ca, cb


SIZES = [1, SLICE - 1, SLICE, SLICE + 1, 4 << 20]
IDS = ["1B", "slice-1", "slice", "slice+1", "4MiB"]


def _advertised(engine, conn, buf, pad=64):
    """Registers ``buf`` (an array, or a (ptr, size) pair) and advertises its middle, ``pad`` bytes in from each end."""
    ok, mr = engine.reg(buf)
    assert ok, engine.last_error
    ptr, size = regions.describe_buffer(buf)
    ok, blob = engine.advertise(conn, mr, ptr + pad, size - 2 * pad)
    assert ok, engine.last_error
    return blob


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src_gpu,dst_gpu", [(False, True), (True, True), (True, False)], ids=["cpu-gpu", "gpu-gpu", "gpu-cpu"])
def test_a_write_into_or_from_gpu_memory_is_byte_exact_and_acknowledged_only_once_copied(fake_gpu, pair, size, src_gpu, dst_gpu):
    write_into_the_middle(fake_gpu, pair, size, src_gpu, dst_gpu)
    assert fake_gpu.log["copies"] >= -(-size // SLICE)


def write_into_the_middle(fake_gpu, pair, size, src_gpu, dst_gpu):
    """Writes ``size`` bytes (from "GPU memory" or not) into the middle of a window (in "GPU memory" or not); checks
    them, the bytes around them, the notification and the untouched source (shared with test_transfer_staged.py)."""
    a, b, ca, cb = pair
    data = random_bytes(size, size)
    src_mem, src = fake_gpu(data) if src_gpu else (data, data)
    dst_mem, dst = fake_gpu(size + 128) if dst_gpu else (np.full(size + 128, 0xEE, dtype=np.uint8),) * 2
    blob = _advertised(b, cb, dst)
    ok, smr = a.reg(src)
    assert ok, a.last_error
    assert a.write(ca, smr, regions.describe_buffer(src)[0], size, blob, notif=b"landed"), a.last_error
    # write() returned: every slice was acknowledged, so every copy into "GPU memory" has already finished
    assert np.array_equal(dst_mem[64:64 + size], data)
    assert (dst_mem[:64] == 0xEE).all() and (dst_mem[64 + size:] == 0xEE).all()
    assert b.wait_notifs(10) == [(cb, b"landed")]
    assert np.array_equal(src_mem, data)   # the source was only read


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src_gpu,dst_gpu", [(False, True), (True, True), (True, False)], ids=["cpu-gpu", "gpu-gpu", "gpu-cpu"])
def test_a_read_into_or_from_gpu_memory_is_byte_exact_and_done_only_once_copied(fake_gpu, pair, size, src_gpu, dst_gpu):
    read_from_the_middle(fake_gpu, pair, size, src_gpu, dst_gpu)


def read_from_the_middle(fake_gpu, pair, size, src_gpu, dst_gpu):
    """Reads ``size`` bytes from the middle of a window into a buffer (either in "GPU memory" or not) with read_async
    and checks them (shared with test_transfer_staged.py)."""
    a, b, ca, cb = pair
    data = np.concatenate([np.full(64, 1, np.uint8), random_bytes(size, size + 1), np.full(64, 2, np.uint8)])
    _, src = fake_gpu(data) if src_gpu else (data, data)
    blob = _advertised(b, cb, src)
    dst_mem, dst = fake_gpu(size) if dst_gpu else (np.full(size, 0xEE, dtype=np.uint8),) * 2
    ok, dmr = a.reg(dst)
    assert ok, a.last_error
    ok, tid = a.read_async(ca, dmr, regions.describe_buffer(dst)[0], size, blob)
    assert ok, a.last_error
    assert poll_until_done(a, tid, "the read")
    assert np.array_equal(dst_mem, data[64:64 + size])


def test_the_ring_bounds_the_copies_in_flight_and_allocates_nothing_per_transfer(fake_gpu):
    with Engine("lo", 1, 1, 0, slice_bytes=SLICE, gpu_staging=False) as a, Engine("lo", 1, 1, 0, slice_bytes=SLICE, gpu_staging=False) as b:
        ca, cb = connected(a, b)
        dst_mem, dst = fake_gpu(8 << 20)
        blob = _advertised(b, cb, dst, pad=0)
        for seed in range(3):
            data = random_bytes(8 << 20, seed)
            _, smr = a.reg(data)
            assert a.write(ca, smr, data, data.nbytes, blob), a.last_error
            assert np.array_equal(dst_mem, data)
        # one lane: at most RING receive buffers, each allocated once (slices are all the same size)
        assert fake_gpu.log["buffers"] <= _staging.RING
        assert fake_gpu.log["most_in_flight"] <= _staging.RING


def test_replies_behind_a_pending_gpu_copy_leave_in_request_order(fake_gpu):
    """One lane carries slices for GPU memory (acknowledged late, after their copy) and reads of host memory (answered
    at once unless ordered): the initiator closes a lane whose replies come out of order, so every transfer succeeding
    shows that the order held."""
    with Engine("lo", 1, 1, 0, slice_bytes=SLICE, gpu_staging=False) as a, Engine("lo", 1, 1, 0, slice_bytes=SLICE, gpu_staging=False) as b:
        replies_keep_request_order(fake_gpu, a, b, 2 << 20)


def replies_keep_request_order(fake_gpu, a, b, nbytes):
    """Three rounds of a write of ``nbytes`` into "GPU memory" beside a read of host memory, on a's single lane to b;
    every transfer must succeed with the connection up (shared with test_transfer_staged.py)."""
    ca, cb = connected(a, b)
    dst_mem, dst = fake_gpu(nbytes)
    gpu_blob = _advertised(b, cb, dst, pad=0)
    host = random_bytes(SLICE, 5)
    host_blob = _advertised(b, cb, host, pad=0)
    data = random_bytes(nbytes, 6)
    _, smr = a.reg(data)
    out = np.zeros(SLICE, np.uint8)
    _, omr = a.reg(out)
    for _ in range(3):
        ok, w = a.write_async(ca, smr, data, data.nbytes, gpu_blob)
        assert ok, a.last_error
        ok, r = a.read_async(ca, omr, out, SLICE, host_blob)
        assert ok, a.last_error
        assert poll_until_done(a, w, "the write into GPU memory") and poll_until_done(a, r, "the read of host memory")
        assert a.connection_error(ca) is None
    assert np.array_equal(dst_mem, data) and np.array_equal(out, host)


def test_kv_messages_land_in_gpu_memory_and_recv_kv_names_them(fake_gpu, pair):
    a, b, ca, cb = pair
    box_mem, box = fake_gpu(1 << 20)
    ok, kb = b.reg_kv(cb, box)
    assert ok, b.last_error
    ok, ka = a.reg_kv(ca, np.zeros(16, np.uint8))
    assert ok, a.last_error
    for seed, n in enumerate([1, SLICE + 1, 300_000]):
        data = random_bytes(n, seed)
        src_mem, src = fake_gpu(data)
        assert a.send_kv(ka, src), a.last_error
        ok, got = b.recv_kv(kb, 1 << 20)
        assert ok, b.last_error
        assert got == (box[0], n)            # GPU memory given as a pair: its first n bytes, as a pair
        assert np.array_equal(box_mem[:n], data)


def test_a_failed_copy_to_gpu_memory_fails_the_transfer_and_is_never_acknowledged(fake_gpu, pair):
    a_failed_copy_is_never_acknowledged(fake_gpu, *pair)


def a_failed_copy_is_never_acknowledged(fake_gpu, a, b, ca, cb):
    """Every copy into "GPU memory" fails: the write fails, b's connection closes with the copy's reason, no
    notification, nothing written (shared with test_transfer_staged.py)."""
    dst_mem, dst = fake_gpu(1 << 20)
    blob = _advertised(b, cb, dst, pad=0)
    fake_gpu.log["fail"] = True
    data = random_bytes(1 << 20, 1)
    _, smr = a.reg(data)
    assert not a.write(ca, smr, data, data.nbytes, blob, notif=b"never")
    assert "closed" in a.last_error
    assert "fake device copy failed" in wait_connection_closed(b, cb)
    assert b.wait_notifs(0.5) == []
    assert (dst_mem == 0xEE).all()


def test_dereg_of_a_gpu_region_returns_only_after_the_copies_into_it_finished(fake_gpu, pair):
    a, b, ca, cb = pair
    dst_mem, dst = fake_gpu(4 << 20)
    ok, mr = b.reg(dst)
    assert ok, b.last_error
    ok, blob = b.advertise(cb, mr, dst[0], dst[1])
    assert ok, b.last_error
    fake_gpu.log["delay"] = 0.05   # 64 slices of 64 KiB, 50 ms per copy: the write is in flight for seconds
    data = random_bytes(4 << 20, 2)
    _, smr = a.reg(data)
    ok, tid = a.write_async(ca, smr, data, data.nbytes, blob)
    assert ok, a.last_error
    deadline = time.monotonic() + 10
    while fake_gpu.log["copies"] == 0:
        assert time.monotonic() < deadline, "timed out waiting for the first copy into GPU memory"
        time.sleep(0.005)
    assert b.dereg(mr), b.last_error
    copied = fake_gpu.log["copies"]
    snapshot = dst_mem.copy()
    time.sleep(0.3)   # a copy still running after dereg returned would land in this time
    assert fake_gpu.log["copies"] == copied and np.array_equal(dst_mem, snapshot)
    assert not poll_until_done(a, tid, "the write cut short by dereg")
    assert "NOT_ADVERTISED" in a.last_error
