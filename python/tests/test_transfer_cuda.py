"""The transfer engine with CUDA tensors on either side (docs/transfer.md § GPU memory): over the lanes slice by slice
through each lane's pinned buffers, between an initiator's GPU memory and a same-host peer's shared-memory window
by one DMA, and into or out of a same-host peer's GPU window through the connection's staging file (one DMA at the
target, § GPU memory on the same host). Needs a CUDA device: skipped with the reason elsewhere (CI has none); the CPU twins of the staging logic
are in test_transfer_staging.py."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("CUDA not available: no CUDA device on this machine", allow_module_level=True)

from kvasir.transfer import Engine  # noqa: E402
from transfer_helpers import connected, poll_until_done, random_bytes  # noqa: E402

MiB = 1 << 20


@pytest.fixture
def pair():
    """Same-host peers whose GPU windows go over the lanes (no staging file offered)."""
    with Engine("lo", 1, 2, 0, gpu_staging=False) as a, Engine("lo", 1, 2, 0, gpu_staging=False) as b:
        ca, cb = connected(a, b)
        yield a, b, ca, cb


@pytest.fixture
def staged_pair():
    """Same-host peers with the default (gpu_staging on): a GPU window moves through the connection's staging file,
    in pieces of one slot (1 MiB here, so the sizes below sit around it)."""
    with Engine("lo", 1, 2, 0, staging_slot_bytes=MiB) as a, Engine("lo", 1, 2, 0, staging_slot_bytes=MiB) as b:
        ca, cb = connected(a, b)
        yield a, b, ca, cb


def gpu_bytes(data: np.ndarray):
    return torch.from_numpy(data.copy()).cuda()


SIZES = [1, MiB - 1, MiB, MiB + 1, 64 * MiB]
IDS = ["1B", "slice-1", "slice", "slice+1", "64MiB"]
KINDS = [("cpu", "cuda"), ("cuda", "cuda"), ("cuda", "cpu")]
KIND_IDS = ["cpu-cuda", "cuda-cuda", "cuda-cpu"]


def buffer(kind: str, data: np.ndarray):
    """``data`` in host memory (a numpy array) or in GPU memory (a CUDA tensor)."""
    return data.copy() if kind == "cpu" else gpu_bytes(data)


def host(buf) -> np.ndarray:
    return buf.cpu().numpy() if isinstance(buf, torch.Tensor) else buf


def address(buf) -> int:
    return buf.data_ptr() if isinstance(buf, torch.Tensor) else buf.ctypes.data


def one_write(pair, size: int, src: str, dst: str) -> int:
    """Writes ``size`` bytes from ``src`` memory into the middle of a ``dst`` window; checks them, the bytes around them
    and the notification; returns the initiator's count of transfers that went through shared memory."""
    a, b, ca, cb = pair
    data = random_bytes(size, size)
    source = buffer(src, data)
    target = buffer(dst, np.full(size + 128, 0xEE, dtype=np.uint8))
    _, tmr = b.reg(target)
    ok, blob = b.advertise(cb, tmr, address(target) + 64, size)
    assert ok, b.last_error
    ok, smr = a.reg(source)
    assert ok, a.last_error
    assert a.write(ca, smr, address(source), size, blob, notif=b"in"), a.last_error
    got = host(target)   # write() returned: every slice's (or piece's) copy into GPU memory has finished
    assert np.array_equal(got[64:64 + size], data)
    assert (got[:64] == 0xEE).all() and (got[-64:] == 0xEE).all()
    assert b.wait_notifs(10) == [(cb, b"in")]
    return a.shm_transfers


def one_read(pair, size: int, src: str, dst: str) -> int:
    """Reads ``size`` bytes from the middle of a ``src`` window into ``dst`` memory and checks them; returns the
    initiator's count of transfers that went through shared memory."""
    a, b, ca, cb = pair
    data = random_bytes(size + 128, size)
    source = buffer(src, data)
    _, smr = b.reg(source)
    ok, blob = b.advertise(cb, smr, address(source) + 64, size)
    assert ok, b.last_error
    target = buffer(dst, np.full(size, 0xEE, dtype=np.uint8))
    ok, tmr = a.reg(target)
    assert ok, a.last_error
    assert a.read(ca, tmr, address(target), size, blob), a.last_error
    assert np.array_equal(host(target), data[64:64 + size])
    return a.shm_transfers


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src,dst", KINDS, ids=KIND_IDS)
def test_a_one_sided_write_over_the_lanes_between_host_and_gpu_memory_is_byte_exact(pair, size, src, dst):
    assert one_write(pair, size, src, dst) == 0


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src,dst", KINDS, ids=KIND_IDS)
def test_a_one_sided_read_over_the_lanes_between_host_and_gpu_memory_is_byte_exact(pair, size, src, dst):
    assert one_read(pair, size, src, dst) == 0


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_gpu_memory_and_a_same_host_shared_window_move_by_one_dma_both_ways(pair, size):
    a, b, ca, cb = pair
    ok, mr, window = b.alloc_shared(size + 128)
    assert ok, b.last_error
    window[:] = 0xEE
    ok, blob = b.advertise(cb, mr, window.ctypes.data + 64, size)
    data = random_bytes(size, size + 3)
    src = gpu_bytes(data)
    _, smr = a.reg(src)
    assert a.write(ca, smr, src, size, blob), a.last_error             # cuda -> cpu
    assert a.shm_transfers == 1 and np.array_equal(window[64:64 + size], data)
    assert (window[:64] == 0xEE).all() and (window[-64:] == 0xEE).all()
    dst = torch.zeros(size, dtype=torch.uint8, device="cuda")
    _, dmr = a.reg(dst)
    assert a.read(ca, dmr, dst, size, blob), a.last_error              # cpu -> cuda
    assert a.shm_transfers == 2 and torch.equal(dst.cpu(), torch.from_numpy(data))


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


def test_kv_messages_go_from_and_into_gpu_memory_and_recv_kv_gives_a_cuda_tensor(pair):
    a, b, ca, cb = pair
    inbox = torch.zeros(4096, dtype=torch.float16, device="cuda")
    ok, kb = b.reg_kv(cb, inbox)
    assert ok, b.last_error
    ok, ka = a.reg_kv(ca, np.zeros(16, dtype=np.uint8))
    assert ok, a.last_error
    data = random_bytes(3000, 3)
    assert a.send_kv(ka, gpu_bytes(data)), a.last_error                 # cuda -> cuda
    ok, got = b.recv_kv(kb, 8192)
    assert ok, b.last_error
    assert got.is_cuda and got.dtype == torch.float16 and got.numel() == 1500
    assert np.array_equal(got.cpu().view(torch.uint8).numpy(), data)
    assert a.send_kv(ka, data[:1001]), a.last_error                     # cpu -> cuda, odd length: uint8
    ok, got = b.recv_kv(kb, 8192)
    assert ok and got.dtype == torch.uint8 and np.array_equal(got.cpu().numpy(), data[:1001])


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("src", ["cpu", "cuda"])
def test_a_same_host_write_into_a_gpu_window_goes_through_the_staging_file_byte_exact(staged_pair, size, src):
    assert one_write(staged_pair, size, src, "cuda") == 1   # through the staging file, not the lanes
    assert staged_pair[1].staging_refused is None            # the target registered it with CUDA


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("dst", ["cpu", "cuda"])
def test_a_same_host_read_of_a_gpu_window_goes_through_the_staging_file_byte_exact(staged_pair, size, dst):
    assert one_read(staged_pair, size, "cuda", dst) == 1
    assert staged_pair[1].staging_refused is None


def test_eight_concurrent_staged_writes_into_one_gpu_buffer_each_land_in_their_own_window(staged_pair):
    a, b, ca, cb = staged_pair
    target = torch.zeros(8 * 3 * MiB, dtype=torch.uint8, device="cuda")
    _, tmr = b.reg(target)
    ids, data = [], []
    for i in range(8):
        ok, blob = b.advertise(cb, tmr, target.data_ptr() + i * 3 * MiB, 3 * MiB)
        assert ok, b.last_error
        d = random_bytes(3 * MiB, 40 + i)
        data.append(d)
        _, mr = a.reg(d)
        ok, tid = a.write_async(ca, mr, d, d.nbytes, blob)
        assert ok, a.last_error
        ids.append(tid)
    for tid in ids:
        assert poll_until_done(a, tid, "a staged write")
    got = target.cpu().numpy()
    for i, d in enumerate(data):
        assert np.array_equal(got[i * 3 * MiB:(i + 1) * 3 * MiB], d)
    assert a.shm_transfers == 8
