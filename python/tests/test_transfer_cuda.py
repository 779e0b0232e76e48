"""The transfer engine with CUDA tensors as the initiator's buffers (docs/transfer.md § GPU memory): over the lanes
through pinned staging, and to or from a same-host peer's shared-memory window by one DMA. Needs a CUDA device:
skipped with the reason elsewhere (CI has none; the GPU run's results are in docs/benchmarks.md)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device on this machine", allow_module_level=True)

from kvasir.transfer import Engine  # noqa: E402
from transfer_helpers import connected, poll_until_done, random_bytes  # noqa: E402

MiB = 1 << 20


@pytest.fixture
def pair():
    with Engine("lo", 1, 2, 0) as a, Engine("lo", 1, 2, 0) as b:
        ca, cb = connected(a, b)
        yield a, b, ca, cb


def gpu_bytes(data: np.ndarray):
    return torch.from_numpy(data.copy()).cuda()


@pytest.mark.parametrize("size", [1, MiB - 1, MiB + 1, 64 * MiB], ids=["1B", "slice-1", "slice+1", "64MiB"])
def test_gpu_memory_goes_over_the_lanes_both_ways_byte_exact(pair, size):
    a, b, ca, cb = pair
    data = random_bytes(size, size)
    src = gpu_bytes(data)
    ok, smr = a.reg(src)
    assert ok, a.last_error
    window = np.full(size + 128, 0xEE, dtype=np.uint8)
    _, wmr = b.reg(window)
    ok, blob = b.advertise(cb, wmr, window.ctypes.data + 64, size)
    assert ok, b.last_error
    assert a.write(ca, smr, src.data_ptr(), size, blob), a.last_error
    assert np.array_equal(window[64:64 + size], data)
    assert (window[:64] == 0xEE).all() and (window[-64:] == 0xEE).all()
    dst = torch.zeros(size, dtype=torch.uint8, device="cuda")
    _, dmr = a.reg(dst)
    assert a.read(ca, dmr, dst.data_ptr(), size, blob), a.last_error
    assert torch.equal(dst.cpu(), torch.from_numpy(data))
    assert a.shm_transfers == 0


def test_gpu_memory_and_a_same_host_shared_window_move_by_one_dma(pair):
    a, b, ca, cb = pair
    ok, mr, buf = b.alloc_shared(8 * MiB)
    assert ok, b.last_error
    ok, blob = b.advertise(cb, mr, buf.ctypes.data, 8 * MiB)
    data = random_bytes(3 * MiB + 5, 7)
    src = gpu_bytes(data)
    _, smr = a.reg(src)
    assert a.write(ca, smr, src, len(data), blob, remote_offset=MiB), a.last_error
    assert a.shm_transfers == 1 and np.array_equal(buf[MiB:MiB + len(data)], data)
    dst = torch.zeros(len(data), dtype=torch.uint8, device="cuda")
    _, dmr = a.reg(dst)
    assert a.read(ca, dmr, dst, len(data), blob, remote_offset=MiB), a.last_error
    assert a.shm_transfers == 2 and torch.equal(dst.cpu(), torch.from_numpy(data))


def test_an_async_read_into_gpu_memory_is_there_when_the_poll_says_done(pair):
    a, b, ca, cb = pair
    data = random_bytes(5 * MiB, 9)
    _, wmr = b.reg(data)
    _, blob = b.advertise(cb, wmr, data, data.nbytes)
    dst = torch.zeros(data.nbytes, dtype=torch.uint8, device="cuda")
    _, dmr = a.reg(dst)
    ok, tid = a.read_async(ca, dmr, dst, data.nbytes, blob)
    assert ok, a.last_error
    assert poll_until_done(a, tid, "the async read")
    assert torch.equal(dst.cpu(), torch.from_numpy(data))


def test_gpu_memory_cannot_be_a_target_and_send_kv_from_it_works(pair):
    a, b, ca, cb = pair
    g = torch.zeros(1024, dtype=torch.uint8, device="cuda")
    ok, mr = a.reg(g)
    assert ok
    assert a.advertise(ca, mr, g.data_ptr(), 1024) == (False, None)
    assert "GPU memory, which cannot be a target" in a.last_error
    assert a.reg_kv(ca, g) == (False, None) and "cannot be a target" in a.last_error
    # a raw (ptr, size) pair of GPU memory is recognised as GPU memory, never read by the CPU
    ok, raw = a.reg((g.data_ptr(), 1024))
    assert ok and not a.advertise(ca, raw, g.data_ptr(), 1024)[0]

    inbox = np.zeros(4096, dtype=np.uint8)
    ok, kb = b.reg_kv(cb, inbox)
    assert ok, b.last_error
    ok, ka = a.reg_kv(ca, np.zeros(16, dtype=np.uint8))
    assert ok, a.last_error
    data = random_bytes(3000, 3)
    assert a.send_kv(ka, gpu_bytes(data)), a.last_error
    ok, got = b.recv_kv(kb, 4096)
    assert ok and np.array_equal(np.asarray(got), data)
