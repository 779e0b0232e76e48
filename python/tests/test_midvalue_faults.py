"""A connection that fails in the middle of a GET reply's value, through a relay (flipping_relay.py): lost (closed
mid-value) or stalled (no byte more until the client's request timeout). Pins what no other test reached: the keys of
the replies answered before keep their values byte for byte, every key of the broken reply and of the chunks after it is
an error (never a length over a half-written destination), the broken connection is never used again (the next call
reads every value right, in step), and its reader thread ends."""
import threading

import numpy as np
import pytest

from kvasir import KvStore
from kvasir import errors as E

from conftest import Node, wait_until
from flipping_relay import FlippingRelay

VALUE = 100_000
COUNT = 10


@pytest.fixture
def batch4(cli):
    """A node that answers at most 4 keys per request, so a batch of 10 is three GETs."""
    n = Node("--memory", "64MiB", "--max-batch", "4")
    yield n
    n.stop()


def _values():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, VALUE, dtype=np.uint8) for _ in range(COUNT)]


def _readers() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("kvasir-reader") and t.is_alive())


def _get_all(s, keys, out):
    return s.batch_get_into(keys, [out.ctypes.data + i * VALUE for i in range(COUNT)], [VALUE] * COUNT)


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_connection_broken_mid_value_fails_its_keys_alone_and_is_never_reused(batch4, fault):
    values = _values()
    keys = [f"mid/{i}" for i in range(COUNT)]
    readers_before = _readers()
    with FlippingRelay(batch4.address) as relay:
        s = KvStore(relay.address, transport="tcp", request_timeout=1.0, connect_timeout=5.0)
        try:
            assert [s.put(k, v) for k, v in zip(keys, values)] == [0] * COUNT
            out = np.zeros(COUNT * VALUE, dtype=np.uint8)
            s.register_buffer(out.ctypes.data, out.nbytes)
            # the first GET (keys 0-3) passes; the second (keys 4-7) breaks inside key 5's value
            first = s.get(keys[0])
            assert first == values[0].tobytes()
            (relay.arm_cut if fault == "cut" else relay.arm_stall)(VALUE + VALUE // 2, skip=1)
            got = _get_all(s, keys, out)
            assert got[:4] == [VALUE] * 4
            for i in range(4):
                assert np.array_equal(out[i * VALUE:(i + 1) * VALUE], values[i]), f"value {i} differs"
            want = E.UNAVAILABLE if fault == "cut" else E.TIMEOUT
            assert got[4:] == [want] * (COUNT - 4)
            # the next call goes on a new connection and reads every value right
            out[:] = 0
            assert _get_all(s, keys, out) == [VALUE] * COUNT
            for i in range(COUNT):
                assert np.array_equal(out[i * VALUE:(i + 1) * VALUE], values[i]), f"value {i} differs after the fault"
        finally:
            s.close()
    wait_until(lambda: _readers() <= readers_before, "the readers of the broken and closed connections to end")
