"""KvStore against a real node (see conftest.py): every call, limits, errors, config, interop."""
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

import kvasir
from kvasir import KvasirAuthError, KvasirError, KvStore
from kvasir import protocol as P

from conftest import AUTH_KEY

MiB = 1 << 20
RNG = np.random.default_rng(1234)


def rand(n: int) -> np.ndarray:
    """n random bytes in a numpy array (at least 1 element so that .ctypes.data is a real address)."""
    a = np.empty(max(n, 1), dtype=np.uint8)
    a[:n] = RNG.integers(0, 256, n, dtype=np.uint8)
    return a


def reg(store, *arrays):
    for a in arrays:
        store.register_buffer(a.ctypes.data, a.nbytes)


def uniq(name: str) -> str:
    return f"{name}/{os.getpid()}/{time.monotonic_ns()}"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_codes_match_dotnet_kvstatus():
    assert (kvasir.OK, kvasir.NOT_FOUND, kvasir.VALUE_TOO_LARGE, kvasir.INVALID_KEY, kvasir.OUT_OF_MEMORY) == (0, -1, -2, -3, -4)
    assert (kvasir.BUFFER_TOO_SMALL, kvasir.TIMEOUT, kvasir.UNAVAILABLE, kvasir.PROTOCOL_ERROR) == (-16, -17, -18, -19)
    assert kvasir.code_name(-18) == "UNAVAILABLE" and kvasir.code_name(5) == "OK"


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, MiB, 16 * MiB])
def test_round_trip_raw_addresses(store, size):
    src, dst = rand(size), np.zeros(max(size, 1) + 8, dtype=np.uint8)
    dst[size:] = 0xEE
    reg(store, src, dst)
    key = uniq(f"rt{size}")
    assert store.batch_put_from([key], [src.ctypes.data], [size]) == [0]
    assert store.batch_get_into([key], [dst.ctypes.data], [dst.nbytes]) == [size]
    assert np.array_equal(dst[:size], src[:size])
    assert (dst[size:] == 0xEE).all()  # bytes past the value untouched
    assert store.get(key) == src[:size].tobytes()
    assert store.batch_is_exist([key]) == [1]
    # and the bytes API writes what the raw API reads
    key2 = uniq(f"rt{size}b")
    assert store.put(key2, src[:size].tobytes()) == 0
    dst[:] = 0
    assert store.batch_get_into([key2], [dst.ctypes.data], [size]) == [size]
    assert np.array_equal(dst[:size], src[:size])


@pytest.mark.parametrize("count", [1, 128, 1024])
def test_batches_with_hits_and_misses(store, count):
    width = 100
    src, dst = rand(count * width), np.zeros(count * width, dtype=np.uint8)
    reg(store, src, dst)
    base = uniq(f"batch{count}")
    keys = [f"{base}/{i}" for i in range(count)]
    stored = [i for i in range(count) if i % 3 != 1 or count == 1]
    sizes = [width - (i % 7) for i in range(count)]
    assert store.batch_put_from([keys[i] for i in stored], [src.ctypes.data + i * width for i in stored],
                                [sizes[i] for i in stored]) == [0] * len(stored)
    got = store.batch_get_into(keys, [dst.ctypes.data + i * width for i in range(count)], [width] * count)
    for i in range(count):
        if i in stored:
            assert got[i] == sizes[i]
            assert np.array_equal(dst[i * width:i * width + sizes[i]], src[i * width:i * width + sizes[i]])
        else:
            assert got[i] == kvasir.NOT_FOUND
    assert store.batch_is_exist(keys) == [1 if i in stored else 0 for i in range(count)]
    assert store.batch_remove(keys) == [0 if i in stored else -1 for i in range(count)]
    assert store.batch_is_exist(keys) == [0] * count


def test_multi_buffer_gather_and_scatter(store):
    pieces = [rand(1000), rand(5000), rand(1)]
    value = np.concatenate([p[:n] for p, n in zip(pieces, (1000, 5000, 1))])
    out = [np.zeros(3000, dtype=np.uint8), np.zeros(2000, dtype=np.uint8), np.zeros(1500, dtype=np.uint8)]
    small = [np.zeros(3000, dtype=np.uint8), np.zeros(3000, dtype=np.uint8)]
    reg(store, *pieces, *out, *small)
    k1, k2 = uniq("multi1"), uniq("multi2")
    res = store.batch_put_from_multi_buffers(
        [k1, k2], [[p.ctypes.data for p in pieces], [pieces[0].ctypes.data]], [[1000, 5000, 1], [10]])
    assert res == [0, 0]
    assert store.get(k1) == value.tobytes()
    got = store.batch_get_into_multi_buffers(
        [k1, k2, uniq("absent"), k1],
        [[o.ctypes.data for o in out], [out[2].ctypes.data + 1400], [out[0].ctypes.data], [s.ctypes.data for s in small]],
        [[3000, 2000, 1500], [100], [10], [3000, 2999]])
    assert got == [6001, 10, kvasir.NOT_FOUND, kvasir.BUFFER_TOO_SMALL]
    joined = np.concatenate(out)
    assert np.array_equal(joined[:6001], value)
    assert not joined[6001:5000 + 1400].any()  # past the value: untouched (zeros) up to k2's bytes
    assert np.array_equal(out[2][1400:1410], pieces[0][:10])


def test_exists_remove_and_invalid(store):
    k = uniq("ex")
    assert store.put(k, b"x") == 0
    assert store.batch_is_exist([k, uniq("nope"), "", "k" * 513]) == [1, 0, -1, -1]
    assert store.is_exist(k) == 1
    assert store.remove(k) == 0
    assert store.remove(k) == kvasir.NOT_FOUND
    assert store.remove("") == kvasir.INVALID_KEY
    assert store.get(k) is None


def test_buffer_too_small_keeps_connection_in_step(store):
    src, dst = rand(1000), np.zeros(2000, dtype=np.uint8)
    reg(store, src, dst)
    a, b = uniq("small-a"), uniq("small-b")
    assert store.batch_put_from([a, b], [src.ctypes.data, src.ctypes.data], [1000, 500]) == [0, 0]
    got = store.batch_get_into([a, b], [dst.ctypes.data, dst.ctypes.data + 1000], [999, 1000])
    assert got == [kvasir.BUFFER_TOO_SMALL, 500]
    assert np.array_equal(dst[1000:1500], src[:500])
    assert store.get(a) == src.tobytes()  # the stream stayed in step


def test_value_over_max_is_refused_locally(store):
    big = np.zeros(16 * MiB + 1, dtype=np.uint8)
    reg(store, big)
    op = "requests_put" if store.transport == "tcp" else "requests_alloc"
    before = store.stats()[op]
    ok = uniq("ok")
    assert store.batch_put_from([uniq("big"), ok], [big.ctypes.data] * 2, [big.nbytes, 3]) == [kvasir.VALUE_TOO_LARGE, 0]
    assert store.stats()[op] == before + 1  # only the small value went to the node
    assert store.put(uniq("big2"), big.tobytes()) == kvasir.VALUE_TOO_LARGE
    assert store.get(ok) == b"\x00" * 3
    assert store.max_value_bytes == 16 * MiB


def test_key_length_limits(store):
    long_key, max_key = b"k" * 513, os.urandom(500) + b"k" * 12
    dst = np.zeros(16, dtype=np.uint8)
    reg(store, dst)
    assert store.put(long_key, b"v") == kvasir.INVALID_KEY
    assert store.put(b"", b"v") == kvasir.INVALID_KEY
    assert store.batch_get_into([long_key], [dst.ctypes.data], [16]) == [kvasir.INVALID_KEY]
    assert store.put(max_key, b"binary") == 0
    assert store.get(max_key) == b"binary"
    with pytest.raises(KvasirError):
        store.get(long_key)
    assert store.put("clé", b"utf8") == 0 and store.get("clé".encode()) == b"utf8"


def test_batch_get_into_writes_in_place(store):
    src = rand(4096)
    dst = np.zeros(4096, dtype=np.uint8)
    view = dst[100:200]  # a numpy view taken before the call sees the bytes: same memory
    addr = dst.ctypes.data
    reg(store, src, dst)
    k = uniq("inplace")
    assert store.put(k, src.tobytes()) == 0
    assert store.batch_get_into([k], [addr], [4096]) == [4096]
    assert dst.ctypes.data == addr
    assert np.array_equal(view, src[100:200])
    assert np.shares_memory(view, dst)


def test_unregistered_addresses_are_refused(store):
    a = np.zeros(100, dtype=np.uint8)
    with pytest.raises(ValueError):
        store.batch_get_into(["k"], [a.ctypes.data], [100])
    reg(store, a)
    with pytest.raises(ValueError):
        store.batch_put_from(["k"], [a.ctypes.data + 50], [51])  # runs past the region
    assert store.unregister_buffer(a.ctypes.data) == 0
    assert store.unregister_buffer(a.ctypes.data) == kvasir.NOT_FOUND
    with pytest.raises(ValueError):
        store.batch_put_from(["k"], [a.ctypes.data], [1])
    with pytest.raises(ValueError):
        store.batch_put_from(["k", "j"], [a.ctypes.data], [1])


def test_threads_share_one_store(store):
    errors = []

    def worker(t):
        try:
            for i in range(50):
                k = f"thread/{t}/{i}"
                v = os.urandom(100 + i)
                assert store.put(k, v) == 0
                assert store.get(k) == v
        except Exception as ex:  # noqa: BLE001
            errors.append(ex)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_ping_and_stats(store):
    assert store.ping(b"abc") == b"abc"
    stats = store.stats()
    assert stats["capacity_bytes"] == 256 * MiB and "keys" in stats


def test_unreachable_server_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(KvasirError, match="cannot connect"):
        KvStore(f"127.0.0.1:{closed_port()}", connect_timeout=3)
    assert time.monotonic() - t0 < 3


def test_auth(auth_node, node):
    with KvStore(auth_node.address, AUTH_KEY) as s:
        assert s.put("auth", b"yes") == 0 and s.get("auth") == b"yes"
    with pytest.raises(KvasirAuthError):
        KvStore(auth_node.address, "ff" * 32)
    with pytest.raises(KvasirAuthError):
        KvStore(auth_node.address)
    with pytest.raises(KvasirAuthError):  # mutual: a key is configured, the node does not authenticate
        KvStore(node.address, AUTH_KEY)
    with pytest.raises(KvasirError):
        KvStore(auth_node.address, "not-hex")


def test_config_chain(node, tmp_path, monkeypatch):
    cfg = tmp_path / "kvasir.yaml"
    cfg.write_text(f"servers: 127.0.0.1:{closed_port()}\nrequest_timeout: 7\nconnect_timeout: 2\n")
    monkeypatch.setenv("KVASIR_CONFIG", str(cfg))
    with pytest.raises(KvasirError):  # the file alone points at a closed port
        KvStore()
    with KvStore(node.address) as s:  # arguments win over the file
        assert s.request_timeout == 7 and s.connect_timeout == 2 and s.port == node.port
    monkeypatch.setenv("KVASIR_SERVERS", node.address)  # env wins over the file
    with KvStore() as s:
        assert s.port == node.port and s.request_timeout == 7
    monkeypatch.setenv("KVASIR_SERVERS", f"127.0.0.1:{closed_port()}")
    with KvStore(f"{node.address},127.0.0.1:1", request_timeout=3) as s:  # args win over env (two servers: a static cluster)
        assert s.port == node.port and s.request_timeout == 3
    monkeypatch.setenv("KVASIR_AUTH_KEY", AUTH_KEY)
    with pytest.raises(KvasirAuthError):  # the env key applies to a node without auth
        KvStore(node.address)
    monkeypatch.delenv("KVASIR_AUTH_KEY")
    monkeypatch.setenv("KVASIR_TRANSPORT", "shm")
    with KvStore(node.address) as s:   # the node is on this host with a /dev/shm arena
        assert s.transport == "shm"
    with KvStore(node.address, transport="tcp") as s:
        assert s.put("t", b"1") == 0 and s.transport == "tcp"
    monkeypatch.setenv("KVASIR_TRANSPORT", "carrier-pigeon")
    with pytest.raises(KvasirError, match="unknown transport"):
        KvStore(node.address)
    cfg.write_text("servers: x:1\nbogus: 1\n")
    with pytest.raises(KvasirError, match="unknown keys"):
        KvStore(node.address)
    cfg.write_text(f"servers: {node.address}\nnode:\n  memory: 1GiB\n")   # the node's section is not the client's business
    monkeypatch.delenv("KVASIR_SERVERS")
    monkeypatch.delenv("KVASIR_TRANSPORT")
    with KvStore() as s:
        assert s.port == node.port


def test_node_stopped_mid_session(own_node):
    s = KvStore(own_node.address, request_timeout=5, connect_timeout=2)
    dst = np.zeros(64, dtype=np.uint8)
    reg(s, dst)
    assert s.put("a", b"1") == 0
    own_node.stop()
    t0 = time.monotonic()
    assert s.batch_get_into(["a", "b"], [dst.ctypes.data] * 2, [32, 32]) == [kvasir.UNAVAILABLE] * 2
    assert s.batch_is_exist(["a"]) == [-1]
    assert s.put("c", b"2") == kvasir.UNAVAILABLE
    assert s.batch_remove(["a", ""]) == [kvasir.UNAVAILABLE, kvasir.INVALID_KEY]
    with pytest.raises(KvasirError):
        s.get("a")
    assert time.monotonic() - t0 < 10
    s.close()
    with pytest.raises(KvasirError):
        s.put("a", b"1")


def _silent_node(hold: threading.Event):
    """A fake node that completes HELLO and then never answers: for the request timeout."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = srv.accept()
        with conn:
            head = conn.recv(P.HEADER_SIZE, socket.MSG_WAITALL)
            h = P.unpack_header(head)
            conn.recv(h.meta_length, socket.MSG_WAITALL)
            reply = P.HelloReply(1, 0, False, bytes(32), 1 << 20, 512, 8192, 8 << 20, 1 << 30, "silent")
            conn.sendall(P.encode_frame(P.Opcode.HELLO, P.Flag.REPLY, h.request_id, 0, reply))
            hold.wait(20)
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def test_request_timeout():
    hold = threading.Event()
    port = _silent_node(hold)
    try:
        s = KvStore(f"127.0.0.1:{port}", request_timeout=0.5, connect_timeout=1)
        t0 = time.monotonic()
        assert s.batch_is_exist(["a", "b"]) == [-1, -1]
        assert "no progress" in s.last_error
        assert time.monotonic() - t0 < 3
        # the connection was dropped; reconnecting to the one-shot fake node fails: UNAVAILABLE
        assert s.remove("a") == kvasir.UNAVAILABLE
        s.close()
    finally:
        hold.set()


def test_interop_with_dotnet_cli(cli, node, store, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    k1, k2 = uniq("from-dotnet"), uniq("from-python")
    r = subprocess.run([*cli, "put", "--server", node.address, k1, str(src)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert store.get(k1) == data
    assert store.put(k2, data[::-1]) == 0
    out = tmp_path / "out.bin"
    r = subprocess.run([*cli, "get", "--server", node.address, k2, str(out)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data[::-1]


def test_reconnects_after_a_dropped_connection(store):
    k = uniq("reconnect")
    assert store.put(k, b"v") == 0
    store._conn.sock.shutdown(socket.SHUT_RDWR)  # the connection breaks under the store
    assert store.batch_is_exist([k]) == [-1]     # the request in flight fails ...
    assert store.get(k) == b"v"                  # ... and the next call reconnects


def test_verify_crc(node):
    with KvStore(node.address, verify_crc=True) as s:
        k = uniq("crc")
        assert s.put(k, b"hello") == 0 and s.get(k) == b"hello"
        assert s.put(k, b"") == 0 and s.get(k) == b""


def test_the_key_comes_from_a_private_key_file_and_a_shared_one_is_refused(auth_node, monkeypatch, tmp_path):
    # KVASIR_AUTH_KEY_FILE (what `kvasir keygen` writes and the CLI reads) works for Python clients too
    key_file = tmp_path / "auth.key"
    key_file.write_text(AUTH_KEY + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("KVASIR_AUTH_KEY_FILE", str(key_file))
    with KvStore(auth_node.address, request_timeout=10) as s:
        assert s.put("from-key-file", b"v") == 0 and s.get("from-key-file") == b"v"
    key_file.chmod(0o644)
    with pytest.raises(KvasirError, match=r"is readable by other users \(mode 0644\); run chmod 600"):
        KvStore(auth_node.address)
    monkeypatch.setenv("KVASIR_AUTH_KEY", AUTH_KEY)   # a key given directly wins: the file is not read
    with KvStore(auth_node.address, request_timeout=10) as s:
        assert s.get("from-key-file") == b"v"


@pytest.mark.parametrize("poll", [0, -1.0])
def test_a_membership_poll_that_is_not_positive_is_refused_naming_the_option(poll):
    # 0 polled Redis in a busy loop (and a failure's back-off doubled from 0); .NET refuses it as well
    with pytest.raises(KvasirError, match="membership_poll must be a positive number of seconds"):
        KvStore("127.0.0.1:1", membership_poll=poll)
