"""Large TCP batches striped over several connections (``KvStore(stripe_bytes=..., connections_per_node=...)``,
kvasir.stripes): how a batch is cut, that every value still round-trips byte-exact over several connections (the
node's STATS count the requests and connections), the batches that must go whole, per-run failures, and the options'
checks. Striping is forced on: this machine has 2 cores, where the default is off. As the .NET StripeTests."""

import os
import random
import threading
import time

import numpy as np
import pytest

import kvasir
import kvasir.connection
from kvasir import protocol as P
from conftest import AUTH_KEY, Node, wait_until
from flipping_relay import FlippingRelay
from kvasir import KvasirError, KvStore
from kvasir import stripes
from kvasir.stripes import default_stripe_bytes, split

MIB = 1 << 20


@pytest.fixture(scope="module")
def snode(cli):
    n = Node("--memory", "256MiB", "--max-value", "16MiB", "--admin-port", "off")
    yield n
    n.stop()


def _store(address, stripe=MIB, connections=4, **kw):
    return KvStore(address, transport="tcp", stripe_bytes=stripe, connections_per_node=connections, **kw)


def _counters(store) -> dict:
    s = store.stats()
    return {k: s[k] for k in ("requests_put", "requests_get", "connections_total", "connections_refused")}


def _delta(before, after, name):
    return after[name] - before[name]


def _values(seed: int, sizes) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]


def _put(store, keys, values, **kw):
    for v in values:
        store.register_buffer(v.ctypes.data, max(v.nbytes, 1))
    return store.batch_put_from(keys, [v.ctypes.data for v in values], [v.nbytes for v in values], **kw)


def _get(store, keys, sizes):
    dests = [np.zeros(max(size, 1), dtype=np.uint8) for size in sizes]
    for d in dests:
        store.register_buffer(d.ctypes.data, d.nbytes)
    return store.batch_get_into(keys, [d.ctypes.data for d in dests], list(sizes)), dests


# --- the split ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths, most, min_bytes, run_lengths", [
    ([4, 4, 4, 4], 4, 1, [1, 1, 1, 1]),
    ([1] * 8, 4, 1, [2, 2, 2, 2]),
    ([1] * 8, 4, 3, [4, 4]),             # 8 bytes: two runs of at least 3
    ([1, 1, 1], 4, 2, [3]),              # under twice the minimum: whole
    ([10, 1, 1, 1, 1], 4, 1, [1, 1, 1, 2]),   # a large first value is a run of its own
    ([1, 1, 1, 1, 10], 3, 1, [3, 1, 1]),      # ... and a large last one
    ([5, 5], 1, 1, [2]),                 # one connection
    ([5, 5], 4, 0, [2]),                 # striping off
    ([7], 4, 1, [1]),                    # one entry
    ([], 4, 1, [0]),
])
def test_a_batch_is_cut_into_contiguous_runs_about_equal_in_bytes_as_the_dotnet_client_cuts_it(lengths, most, min_bytes, run_lengths):
    runs = split(lengths, most, min_bytes)
    assert [e - s for s, e in runs] == run_lengths
    assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
    assert all(runs[i - 1][1] == runs[i][0] for i in range(1, len(runs)))


def test_random_batches_are_cut_into_every_key_once_in_order_into_as_many_runs_as_the_bytes_hold_each_near_an_equal_share():
    rng = random.Random(21)
    for round_ in range(3000):
        lengths = [rng.randrange(0, 5000) for _ in range(rng.randrange(1, 40))]
        most, min_bytes = rng.randrange(1, 9), rng.randrange(0, 3000)
        runs = split(lengths, most, min_bytes)
        total = sum(lengths)
        expected = 1 if min_bytes == 0 or most == 1 or len(lengths) == 1 else max(1, min(most, len(lengths), total // min_bytes))
        assert len(runs) == expected, (round_, lengths, most, min_bytes, runs)
        assert [i for s, e in runs for i in range(s, e)] == list(range(len(lengths))), (round_, runs)   # each key once, in order
        if len(runs) > 1:
            assert all(e > s for s, e in runs), (round_, runs)
            assert total >= 2 * min_bytes and total // len(runs) >= min_bytes   # no more runs than the bytes hold
            share, biggest = total / len(runs), max(lengths)
            for s, e in runs:   # within one value of an equal share
                assert share - biggest <= sum(lengths[s:e]) <= share + biggest, (round_, lengths, most, min_bytes, runs)


def test_striping_is_on_by_default_only_on_four_cores_or_more():
    cores = len(os.sched_getaffinity(0))
    assert default_stripe_bytes() == (MIB if cores >= 4 else 0)


# --- over a node -------------------------------------------------------------------------------------------------

def test_a_large_batch_goes_as_one_request_per_connection_and_every_value_round_trips_byte_exact(snode):
    with _store(snode.address) as store:
        keys = [f"striped/{i}" for i in range(16)]
        values = _values(1, [MIB + 4096 * i for i in range(16)])
        before = _counters(store)
        assert _put(store, keys, values) == [0] * 16
        after_put = _counters(store)
        codes, dests = _get(store, keys, [v.nbytes + 100 for v in values])
        after_get = _counters(store)
        assert codes == [v.nbytes for v in values]
        for i, v in enumerate(values):
            assert np.array_equal(dests[i][:v.nbytes], v), f"value {i}"
            assert not dests[i][v.nbytes:].any(), f"bytes past value {i} were written"
        assert _delta(before, after_put, "requests_put") == 4, "the PUT was not striped over four connections"
        assert _delta(after_put, after_get, "requests_get") == 4, "the GET was not striped over four connections"
        assert _delta(before, after_get, "connections_total") == 3   # the shared connection and three more, kept
        assert store._stripes.opened() == 3


def test_misses_and_a_too_small_destination_keep_their_own_statuses_in_a_striped_get(snode):
    with _store(snode.address) as store:
        keys = [f"mixed/{i}" for i in range(8)]
        values = _values(2, [MIB] * 8)
        assert _put(store, keys[:6], values[:6]) == [0] * 6
        before = _counters(store)
        codes, dests = _get(store, keys, [MIB - 1 if i == 2 else MIB for i in range(8)])
        assert codes == [MIB, MIB, kvasir.BUFFER_TOO_SMALL, MIB, MIB, MIB, kvasir.NOT_FOUND, kvasir.NOT_FOUND]
        for i in (0, 1, 3, 4, 5):
            assert np.array_equal(dests[i], values[i]), f"value {i}"
        assert _delta(before, _counters(store), "requests_get") > 1, "the GET was not striped"


def test_a_put_that_names_a_key_twice_goes_whole_so_the_last_value_wins(snode):
    with _store(snode.address) as store:
        keys = [f"twice/{i}" for i in range(8)]
        keys[7] = keys[0]
        values = _values(3, [MIB] * 8)
        before = _counters(store)
        assert _put(store, keys, values) == [0] * 8
        assert _delta(before, _counters(store), "requests_put") == 1
        assert store.get(keys[0]) == values[7].tobytes()


def test_a_chain_put_is_striped_and_its_runs_form_one_chain_that_is_evicted_from_its_tail(cli):
    # Prefix-aware eviction takes the oldest leaf: linked into one chain (each run continuing the last key of the run
    # before it, PARENT_FOLLOWS), the chain's only leaf is its last block and fillers eat it from its tail. Runs left
    # unlinked would leave every run's last block a leaf, and the run stored first would lose its tail first: a hole.
    node = Node("--memory", "24MiB", "--max-value", "2MiB", "--eviction", "prefix", "--admin-port", "off")
    try:
        with _store(node.address) as store:
            keys = [f"chain/{i}" for i in range(8)]
            values = _values(4, [MIB] * 8)
            before = _counters(store)
            assert _put(store, keys, values, chain=True) == [0] * 8
            assert _delta(before, _counters(store), "requests_put") == 4, "the chain was not striped over four connections"
            assert store.stats()["late_parent_waits"] == 0
            assert store.batch_is_exist_chain(keys) == [1] * 8
            codes, dests = _get(store, keys, [MIB] * 8)
            assert codes == [MIB] * 8 and all(np.array_equal(d, v) for d, v in zip(dests, values))
            filler = _values(5, [MIB])
            for f in range(100):
                if not store.batch_is_exist([keys[0]])[0]:
                    break
                assert _put(store, [f"filler/{f}"], filler) == [0]
                present = store.batch_is_exist(keys)
                stored = next((i for i, p in enumerate(present) if not p), len(present))
                assert not any(present[stored:]), f"after {f + 1} fillers the chain has a hole: {present}"
            assert store.batch_is_exist([keys[0]]) == [0], "the fillers never evicted the chain"
    finally:
        node.stop()


def test_each_run_of_a_striped_chain_but_the_first_continues_the_last_key_of_the_run_before_it(snode, monkeypatch):
    # The order the runs land in is the node's to sort out (the test above, and the .NET StripeTests, where the runs
    # land out of order); what the client must send: run 0 continues the caller's parent as a plain chained PUT, every
    # other run CHAIN_PARENT = the key before it with PARENT_FOLLOWS.
    sent = []
    real = kvasir.connection._Connection.request

    def spy(self, opcode, meta, payload=(), payload_length=0, flags=0, **kw):
        if opcode == P.Opcode.PUT:
            msg = P.decode_meta(P.Header(int(P.Opcode.PUT), int(flags), 1, 0, len(meta), payload_length), bytes(meta))
            sent.append((int(flags), msg.parent, [e.key for e in msg.entries]))
        return real(self, opcode, meta, payload, payload_length, flags, **kw)

    monkeypatch.setattr(kvasir.connection._Connection, "request", spy)
    with _store(snode.address) as store:
        keys = [f"runs/{i}".encode() for i in range(8)]
        assert _put(store, keys, _values(6, [MIB] * 8), chain=True, chain_parent=b"runs/parent") == [0] * 8
    runs = sorted(sent, key=lambda r: keys.index(r[2][0]))
    assert [r[2] for r in runs] == [keys[0:2], keys[2:4], keys[4:6], keys[6:8]]
    chained = int(P.Flag.CHAIN | P.Flag.CHAIN_PARENT)
    assert runs[0][:2] == (chained, b"runs/parent")
    for r, run in enumerate(runs[1:], 1):
        assert run[:2] == (chained | int(P.Flag.PARENT_FOLLOWS), keys[2 * r - 1]), f"run {r}"


def test_a_chain_put_goes_whole_to_a_node_that_does_not_link_late_parents(cli):
    node = Node("--memory", "64MiB", "--max-value", "2MiB", "--admin-port", "off", "--withhold-features", "0x40")
    try:
        with _store(node.address) as store:
            keys = [f"chain/{i}" for i in range(8)]
            before = _counters(store)
            assert _put(store, keys, _values(4, [MIB] * 8), chain=True) == [0] * 8
            assert _delta(before, _counters(store), "requests_put") == 1
            assert store.batch_is_exist_chain(keys) == [1] * 8
    finally:
        node.stop()


def test_striping_off_small_batches_and_get_go_as_one_request_on_one_connection(snode):
    values = _values(5, [MIB] * 8)
    with _store(snode.address, stripe=0) as off:
        before = _counters(off)
        keys = [f"off/{i}" for i in range(8)]
        assert _put(off, keys, values) == [0] * 8
        assert _get(off, keys, [MIB] * 8)[0] == [MIB] * 8
        after = _counters(off)
        assert (_delta(before, after, "requests_put"), _delta(before, after, "requests_get")) == (1, 1)
        assert _delta(before, after, "connections_total") == 0
    with _store(snode.address) as small:
        before = _counters(small)
        keys = [f"small/{i}" for i in range(16)]
        small_values = _values(6, [64 << 10] * 16)   # 1 MiB in all: under twice the stripe
        assert _put(small, keys, small_values) == [0] * 16
        assert _get(small, keys, [64 << 10] * 16)[0] == [64 << 10] * 16
        big = [f"big/{i}" for i in range(8)]
        assert _put(small, big, values) == [0] * 8
        before_get = _counters(small)
        results, fetched = small._get([k.encode() for k in big], [None] * 8)   # get(): values allocated on arrival
        assert results == [MIB] * 8 and all(bytes(fetched[i]) == values[i].tobytes() for i in range(8))
        after = _counters(small)
        assert _delta(before, before_get, "requests_put") == 1 + 4 and _delta(before, before_get, "requests_get") == 1
        assert _delta(before_get, after, "requests_get") == 1


def test_a_single_connection_per_node_never_stripes(snode):
    with _store(snode.address, connections=1) as store:
        before = _counters(store)
        keys = [f"one/{i}" for i in range(8)]
        assert _put(store, keys, _values(7, [MIB] * 8)) == [0] * 8
        after = _counters(store)
        assert _delta(before, after, "requests_put") == 1 and _delta(before, after, "connections_total") == 0


def test_threads_striping_large_batches_at_once_round_trip_every_value_on_at_most_the_configured_connections(snode):
    with _store(snode.address, stripe=256 << 10) as store:
        before = _counters(store)
        failures = []

        def lane(t):
            for r in range(4):
                keys = [f"lane{t}/{r}/{i}" for i in range(6)]
                values = _values(100 + 10 * t + r, [(512 << 10) + 777 * i for i in range(6)])
                codes = _put(store, keys, values)
                got, dests = _get(store, keys, [v.nbytes for v in values])
                if codes != [0] * 6 or got != [v.nbytes for v in values] or \
                        not all(np.array_equal(d, v) for d, v in zip(dests, values)):
                    failures.append((t, r, codes, got))

        threads = [threading.Thread(target=lane, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not any(th.is_alive() for th in threads), "a lane still runs after 120 s"
        assert failures == []
        assert _delta(before, _counters(store), "connections_total") <= 3


@pytest.mark.parametrize("connections, requests", [(4, 3), (2, 1)])
def test_a_striped_batch_while_the_shared_connection_is_busy_goes_over_the_free_connections_only(snode, connections, requests):
    # Another thread's GET holds the shared connection (its reply stalled mid-value by the relay): the striped PUT
    # takes the connections that are free, one run each (with one free: the whole batch), and leaves the busy one alone
    # (queued behind the stalled reply it would time out).
    relay = FlippingRelay(snode.address)
    try:
        with _store(snode.address, stripe=0) as watcher, \
                _store(relay.address, connections=connections, request_timeout=10) as store:
            big = _values(15, [2 * MIB])[0]
            assert store.put("busy/big", big.tobytes()) == 0
            relay.arm_stall(1000)
            outcome = []
            reader = threading.Thread(target=lambda: outcome.append(store._get([b"busy/big"], [None])[0]))
            reader.start()
            wait_until(lambda: store._conn.outstanding > 0, "the other thread's GET to be in flight")
            keys = [f"busy/{i}" for i in range(8)]
            values = _values(16, [MIB] * 8)
            before = watcher.stats()["requests_put"]
            assert _put(store, keys, values) == [0] * 8
            assert watcher.stats()["requests_put"] - before == requests
            assert store._conn.outstanding > 0 and reader.is_alive(), "the GET ended before the PUT: nothing was busy"
            relay.close()   # ends the stall: the GET's connection is gone
            reader.join(30)
            assert not reader.is_alive() and outcome == [[kvasir.UNAVAILABLE]]
    finally:
        relay.close()
    with _store(snode.address) as check:
        assert _get(check, keys, [MIB] * 8)[0] == [MIB] * 8


def test_a_run_whose_connection_is_cut_reports_its_own_keys_unavailable_and_the_other_runs_are_exact(snode):
    with FlippingRelay(snode.address) as relay, _store(relay.address) as store:
        keys = [f"cut/{i}" for i in range(8)]
        values = _values(8, [MIB] * 8)
        assert _put(store, keys, values) == [0] * 8
        relay.arm_cut(MIB + 100, skip=1)   # the second GET reply to arrive is cut inside its second value
        codes, dests = _get(store, keys, [MIB] * 8)
        lost = [i for i, c in enumerate(codes) if c != MIB]
        assert lost in ([0, 1], [2, 3], [4, 5], [6, 7]), codes   # one run of two keys, whichever reply came second
        assert all(codes[i] == kvasir.UNAVAILABLE for i in lost), codes
        for i in set(range(8)) - set(lost):
            assert np.array_equal(dests[i], values[i]), f"value {i}"
        # the cut connection is replaced: the next striped GET reads every key
        codes, dests = _get(store, keys, [MIB] * 8)
        assert codes == [MIB] * 8
        assert all(np.array_equal(d, v) for d, v in zip(dests, values))


def test_a_put_run_whose_connection_is_cut_reports_its_own_keys_unavailable_and_the_other_runs_are_stored(snode):
    # The store's shared connection is the relay's first; the striped PUT opens three more and the second one is cut as
    # its PUT arrives, before the node sees any of it.
    with FlippingRelay(snode.address, cut_put_on=2) as relay, _store(relay.address) as store:
        keys = [f"cutput/{i}" for i in range(8)]
        values = _values(13, [MIB] * 8)
        codes = _put(store, keys, values)
        assert relay.put_cuts == 1
        lost = [i for i, c in enumerate(codes) if c != 0]
        assert lost in ([0, 1], [2, 3], [4, 5], [6, 7]), codes   # one run of two keys
        assert all(codes[i] == kvasir.UNAVAILABLE for i in lost), codes
        for i in range(8):
            assert store.get(keys[i]) == (None if i in lost else values[i].tobytes()), f"value {i}"
        # the cut slot is replaced: the lost keys are stored on the next try
        assert _put(store, [keys[i] for i in lost], [values[i] for i in lost]) == [0] * len(lost)
        assert all(store.get(keys[i]) == values[i].tobytes() for i in lost)


def test_a_node_that_refuses_more_connections_serves_every_key_and_is_not_asked_again_for_each_striped_batch(cli):
    # A node at its connection limit closes further connections at HELLO: the runs meant for them go over the
    # connection it accepted, instead of failing their keys. And each striped batch tried to open the connections it
    # lacked: a node at its limit was sent three to refuse per batch for as long as the client ran. After a refusal,
    # while the shared connection serves, the store holds back (1 s, doubling to 30 s, one probe when a wait has
    # passed), as the .NET client's OpenBackoff.
    node = Node("--memory", "64MiB", "--admin-port", "off", "--max-connections-per-address", "1")
    try:
        with _store(node.address) as store:
            keys = [f"held-back/{i}" for i in range(8)]
            values = _values(11, [MIB] * 8)
            assert _put(store, keys, values) == [0] * 8
            for _ in range(20):
                codes, dests = _get(store, keys, [MIB] * 8)
                assert codes == [MIB] * 8 and all(np.array_equal(d, v) for d, v in zip(dests, values))
            after = _counters(store)
            assert after["connections_refused"] > 0, "the node refused no connection: the batches were not striped"
            # The PUT's three, then at most one probe a window (1 + 2 + 4 + 8 + 16 s would pass before a sixth): without
            # the back-off, three a batch (63).
            assert after["connections_refused"] <= 8, after["connections_refused"]
            assert after["connections_total"] == 1
    finally:
        node.stop()


def test_a_store_held_back_by_a_refusal_opens_its_connection_once_the_node_has_room_again(cli):
    node = Node("--memory", "64MiB", "--admin-port", "off", "--max-connections-per-address", "2")
    try:
        other = _store(node.address, stripe=0)
        other.stats()
        with _store(node.address) as store:
            keys = [f"room-again/{i}" for i in range(8)]
            values = _values(12, [MIB] * 8)
            assert _put(store, keys, values) == [0] * 8
            before = _counters(store)
            assert before["connections_refused"] > 0 and before["connections_total"] == 2
            other.close()
            wait_until(lambda: store.stats()["connections"] == 1, "the node to see the other store's connection closed")
            time.sleep(1.25)   # the first wait (1 s) passes
            codes, dests = _get(store, keys, [MIB] * 8)
            assert codes == [MIB] * 8 and all(np.array_equal(d, v) for d, v in zip(dests, values))
            assert _counters(store)["connections_total"] == 3, "the probe opened no connection"
    finally:
        node.stop()


def test_closing_the_store_closes_every_connection_and_later_calls_are_refused(snode):
    with _store(snode.address, stripe=0) as watcher:
        base = watcher.stats()["connections"]
        store = _store(snode.address)
        keys = [f"close/{i}" for i in range(8)]
        assert _put(store, keys, _values(10, [MIB] * 8)) == [0] * 8
        assert watcher.stats()["connections"] == base + 4
        store.close()
        wait_until(lambda: watcher.stats()["connections"] == base, "the node to see the store's four connections closed")
        with pytest.raises(KvasirError, match="closed"):
            store.put("close/after", b"x")


def test_striped_batches_go_on_after_the_node_restarts_at_its_address(cli):
    node = Node("--memory", "64MiB", "--admin-port", "off")
    port = node.port
    try:
        with _store(node.address) as store:
            keys = [f"restart/{i}" for i in range(8)]
            values = _values(11, [MIB] * 8)
            assert _put(store, keys, values) == [0] * 8
            assert _get(store, keys, [MIB] * 8)[0] == [MIB] * 8
            node.stop()
            node = Node("--memory", "64MiB", "--admin-port", "off", port=port)
            # Every connection to the stopped node sits idle, closed by it. The striped PUT leaves the shared one to the
            # store (which reopens it on its next call) and replaces the extra ones: its three runs are stored.
            assert _put(store, keys, values) == [0] * 8
            after_put = _counters(store)   # the new node counts from 0
            assert _delta(dict.fromkeys(after_put, 0), after_put, "requests_put") == 3
            codes, dests = _get(store, keys, [MIB] * 8)
            assert codes == [MIB] * 8 and all(np.array_equal(d, v) for d, v in zip(dests, values))
            assert _delta(after_put, _counters(store), "requests_get") == 4
    finally:
        node.stop()


def test_the_extra_connections_of_a_striped_batch_authenticate_and_speak_tls_as_the_shared_one(cli, certs):
    node = Node("--memory", "64MiB", "--admin-port", "off", "--auth-key", AUTH_KEY, "--tls-cert", certs["server"],
                "--tls-key", certs["key"])
    try:
        with _store(node.address, auth_key=AUTH_KEY, tls_ca=certs["ca"]) as store:
            keys = [f"tls/{i}" for i in range(8)]
            values = _values(14, [MIB + 999 * i for i in range(8)])
            before = _counters(store)
            assert _put(store, keys, values) == [0] * 8
            codes, dests = _get(store, keys, [v.nbytes for v in values])
            assert codes == [v.nbytes for v in values] and all(np.array_equal(d, v) for d, v in zip(dests, values))
            after = _counters(store)
            assert (_delta(before, after, "requests_put"), _delta(before, after, "requests_get")) == (4, 4)
            assert _delta(before, after, "connections_total") == 3
    finally:
        node.stop()


def test_a_cluster_store_gives_its_members_the_striping_options(snode, cli):
    other = Node("--memory", "256MiB", "--max-value", "16MiB", "--admin-port", "off")
    try:
        with KvStore([snode.address, other.address], transport="tcp", stripe_bytes=MIB, connections_per_node=3) as store:
            keys = [f"cluster/{i}" for i in range(32)]
            values = _values(12, [MIB] * 32)
            before = {n["id"]: s.stats()["requests_put"] for n, s in store._router.node_stores()}
            assert _put(store, keys, values) == [0] * 32
            members = store._router.node_stores()
            assert [(s.stripe_bytes, s.connections_per_node) for _, s in members] == [(MIB, 3)] * 2
            puts = sum(s.stats()["requests_put"] - before[n["id"]] for n, s in members)
            assert puts > 2, "the members did not stripe: one request per node"
            codes, dests = _get(store, keys, [MIB] * 32)
            assert codes == [MIB] * 32 and all(np.array_equal(d, v) for d, v in zip(dests, values))
    finally:
        other.stop()


@pytest.mark.parametrize("kw, message", [
    ({"stripe_bytes": -1}, "stripe_bytes must be 0 \\(no striping\\) or a size in bytes \\(got -1\\)"),
    ({"stripe_bytes": 1.5}, "stripe_bytes must be 0"),
    ({"stripe_bytes": True}, "stripe_bytes must be 0"),
    ({"connections_per_node": 0}, "connections_per_node must be an integer of at least 1 \\(got 0\\)"),
    ({"connections_per_node": -2}, "connections_per_node must be an integer of at least 1"),
    ({"connections_per_node": "4"}, "connections_per_node must be an integer"),
])
def test_bad_striping_options_are_refused_with_the_reason_before_connecting(kw, message):
    with pytest.raises(KvasirError, match=message):
        KvStore("127.0.0.1:1", transport="tcp", **kw)   # nothing listens there: the option is named first


def test_the_striping_options_come_from_the_configuration_chain_so_a_connector_is_tuned_without_code(snode, tmp_path, monkeypatch):
    # The engine connectors build their stores from KVASIR_CONFIG and the environment: both options must be settable there.
    cfg = tmp_path / "kvasir.yaml"
    cfg.write_text("connections_per_node: 3\nstripe_bytes: 512KiB\n")
    monkeypatch.setenv("KVASIR_CONFIG", str(cfg))
    with KvStore(snode.address, transport="tcp") as s:
        assert (s.connections_per_node, s.stripe_bytes) == (3, 512 << 10)
    monkeypatch.setenv("KVASIR_STRIPE_BYTES", "2MiB")   # the environment wins over the file
    monkeypatch.setenv("KVASIR_CONNECTIONS_PER_NODE", "2")
    with KvStore(snode.address, transport="tcp") as s:
        assert (s.connections_per_node, s.stripe_bytes) == (2, 2 << 20)
        keys = [f"configured/{i}" for i in range(8)]
        before = _counters(s)
        assert _put(s, keys, _values(13, [MIB] * 8)) == [0] * 8
        assert _delta(before, _counters(s), "requests_put") == 2, "an 8 MiB batch at 2 MiB stripes over 2 connections: 2 runs"
    with KvStore(snode.address, transport="tcp", stripe_bytes=0, connections_per_node=1) as s:   # arguments win
        assert (s.connections_per_node, s.stripe_bytes) == (1, 0)
    monkeypatch.setenv("KVASIR_STRIPE_BYTES", "lots")
    with pytest.raises(KvasirError, match="stripe_bytes must be a size in bytes such as 1048576 or 1MiB, not 'lots'"):
        KvStore(snode.address)
    monkeypatch.delenv("KVASIR_STRIPE_BYTES")
    monkeypatch.setenv("KVASIR_CONNECTIONS_PER_NODE", "0")
    with pytest.raises(KvasirError, match="connections_per_node must be an integer of at least 1"):
        KvStore(snode.address)
    monkeypatch.delenv("KVASIR_CONNECTIONS_PER_NODE")
    with KvStore(snode.address, transport="tcp") as s:   # the file alone again
        assert (s.connections_per_node, s.stripe_bytes) == (3, 512 << 10)
    monkeypatch.delenv("KVASIR_CONFIG")
    with KvStore(snode.address, transport="tcp") as s:   # nothing configured: the defaults
        assert (s.connections_per_node, s.stripe_bytes) == (4, default_stripe_bytes())


def test_open_backoff_waits_doubles_to_its_cap_lets_one_probe_through_and_ends_on_an_opening():
    # On a clock the test moves: what the tests against a refusing node cannot reach in their time.
    from kvasir.stripes import OpenBackoff
    now = [100.0]
    b = OpenBackoff(clock=lambda: now[0])
    assert b.hold_back() == (False, False) and not b.holding
    b.refused(False)
    b.refused(False)   # openings under way when the wait began: not longer
    waits, wait = [], OpenBackoff.FIRST_WAIT
    for _ in range(8):
        now[0] += wait - 0.001
        assert b.hold_back() == (True, False), "let through before its wait passed"
        now[0] += 0.001
        assert not b.holding
        assert b.hold_back() == (False, True), "the first caller after the wait is not the probe"
        assert b.hold_back() == (True, False), "a second caller went beside the probe"
        b.refused(True)
        waits.append(wait)
        wait = min(2 * wait, OpenBackoff.LONGEST_WAIT)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    now[0] += 30
    assert b.hold_back() == (False, True)
    b.abandoned()   # the probe ended without an answer: the next caller probes
    assert b.hold_back() == (False, True)
    b.opened()
    assert b.hold_back() == (False, False) and not b.holding


# --- the threads that send the runs ----------------------------------------------------------------------------

def _stripe_threads() -> dict:
    return {t.ident: t for t in threading.enumerate() if t.name == "kvasir-stripe"}


def test_striped_batches_send_their_runs_from_threads_kept_between_batches_and_closing_the_store_ends_them(snode):
    earlier = set(_stripe_threads())
    with _store(snode.address) as store:
        keys = [f"kept/{i}" for i in range(8)]
        values = _values(11, [MIB + 512 * i for i in range(8)])
        before = _counters(store)
        assert _put(store, keys, values) == [0] * 8
        first = {i: t for i, t in _stripe_threads().items() if i not in earlier}
        for _ in range(3):
            codes, dests = _get(store, keys, [v.nbytes for v in values])
            assert codes == [v.nbytes for v in values]
            assert all(np.array_equal(d, v) for d, v in zip(dests, values))
        assert _delta(before, _counters(store), "requests_put") == 4
        assert _delta(before, _counters(store), "requests_get") == 12, "each GET was not striped over four connections"
        # Four runs a batch, the last sent from the caller's thread: three threads, the same ones for every batch.
        assert len(first) == 3
        assert {i for i in _stripe_threads() if i not in earlier} == set(first)
    for t in first.values():
        t.join(5)
    assert not any(t.is_alive() for t in first.values()), "a stripe thread outlived its closed store"


def test_a_run_thread_beyond_those_kept_ends_after_its_run_and_one_that_raises_is_not_reused():
    workers = stripes._Workers(keep=1)
    gate = threading.Event()
    idents = []
    both = [workers.start(lambda: (idents.append(threading.get_ident()), gate.wait(5))) for _ in range(2)]
    gate.set()
    assert all(done.wait(5) for done in both)
    assert len(set(idents)) == 2   # two at once: two threads
    wait_until(lambda: len([i for i in idents if i in _stripe_threads()]) == 1,
               "the thread beyond the one kept to end (exactly one kept)", 5)

    def boom():
        raise RuntimeError("a run that raised")
    hook, seen = threading.excepthook, []
    threading.excepthook = lambda args: seen.append(args.exc_value)
    try:
        assert workers.start(boom).wait(5)
        after = []
        assert workers.start(lambda: after.append(threading.get_ident())).wait(5), "a run went to a thread that had died"
    finally:
        threading.excepthook = hook
    assert [str(e) for e in seen] == ["a run that raised"]
    workers.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_starts_its_own_run_threads_instead_of_handing_runs_to_its_parents():
    workers = stripes._Workers(keep=2)
    ran = []
    for _ in range(2):
        assert workers.start(lambda: ran.append(threading.get_ident())).wait(5)
    assert ran[0] == ran[1], "the second run did not go to the kept thread"
    pid = os.fork()
    if pid == 0:   # the child: the kept thread is not in this process
        os._exit(0 if workers.start(lambda: None).wait(5) else 3)
    _, status = os.waitpid(pid, 0)
    workers.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child's run waited on a thread of its parent"
