"""The cluster router: places every key on its nodes by rendezvous hashing (:mod:`kvasir.placement`), sends one
request per node in parallel through a single-node :class:`kvasir.KvStore` per member and puts the per-key results
back in the caller's order; replicas, retries and backoff as the :mod:`kvasir.cluster` docstring says."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Tuple

from . import errors as E
from .errors import KvasirError
from .placement import Ring
from .replicas import HybridClock, get_newest

_log = logging.getLogger("kvasir")


class _Slot:
    """One member: a single-node KvStore opened on first use; after a failure it is skipped for a
    backoff (0.25 s doubling to 4 s) so its keys go to replicas at once."""

    def __init__(self, node_id: str, addr: str, tls: bool = False):
        self.id, self.addr, self.tls = node_id, addr, tls
        self.store = None
        self.retired = False   # closed by a view change: never opens a store again
        self.down_until = 0.0
        self.backoff = 0.25
        self.lock = threading.Lock()

    def get(self, open_store, force: bool = False):
        """The node's store; None while it is down (unless ``force``: a last try, backoff or not) or unreachable."""
        if not force and time.monotonic() < self.down_until:
            return None
        with self.lock:
            if self.retired:
                return None
            if self.store is None:
                try:
                    self.store = open_store(self.addr, self.tls)
                except KvasirError as ex:
                    if self.mark_down():
                        _log.warning("kvasir: node %s (%s) cannot be reached: %s", self.id, self.addr, ex)
                    return None
            return self.store

    def mark_down(self) -> bool:
        was_up = time.monotonic() >= self.down_until
        self.down_until = time.monotonic() + self.backoff
        if was_up:
            self.backoff = min(self.backoff * 2, 4.0)
        return was_up

    def close(self) -> None:
        with self.lock:
            self.retired = True
            if self.store is not None:
                self.store.close()
                self.store = None


# Answers that send a key on to its next replica; a copy that failed the client's CRC check (CHECKSUM_MISMATCH) is one.
_RETRY = (E.NOT_FOUND, E.UNAVAILABLE, E.TIMEOUT, E.PROTOCOL_ERROR, E.CHECKSUM_MISMATCH)

# The fix a zero-node line names for Python users (the CLI names --cluster, the .NET SDK KvStoreOptions.Cluster).
NO_NODE_FIX = "pass cluster=NAME"
# How long a zero-node line is reused (each is a SCAN of the Redis), and how often a store logs it at most.
_NO_NODE_REUSE, _NO_NODE_LOG_EVERY = 5.0, 60.0


class Router:
    """Routes a :class:`kvasir.KvStore`'s batches over a membership (see the module docstring)."""

    def __init__(self, membership, replicas: int, open_store: Callable[[str, bool], object], versions: bool = True):
        if not isinstance(replicas, int) or replicas < 1:
            raise KvasirError(f"replicas must be an int >= 1, not {replicas!r}")
        self.membership = membership
        self.replicas = replicas
        self.versions = versions   # with R >= 2: versioned puts, newest-of-all-replicas gets and read repair (replicas.py)
        self.clock = HybridClock()
        self.read_repairs = 0
        self._open_store = open_store
        self._slots: Dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kvasir-route")
        self.last_error = ""
        self._no_node = (None, 0.0)      # (line, when made)
        self._no_node_logged = None      # when the line was last logged
        self._retired_mismatches = 0     # checksum mismatches counted by member stores closed since

    # -- view --

    def _view(self):
        ring, slots, _ = self._view_nodes()
        return ring, slots

    def _view_nodes(self):
        """The ring, each of its nodes' slot and the nodes' records, in ring order, all from one read of the membership
        (a second read may see another membership: pairing its records with these slots named the wrong nodes)."""
        nodes = self.membership.nodes
        ring = Ring([n["id"] for n in nodes])
        by_id = {n["id"]: n for n in nodes}
        slots = []
        with self._lock:
            for node_id in ring.ids:
                addr = by_id[node_id]["addr"]
                tls = by_id[node_id].get("tls") is True
                slot = self._slots.get(node_id)
                if slot is None or slot.addr != addr or slot.tls != tls:
                    if slot is not None:
                        self._retire(slot)
                    slot = self._slots[node_id] = _Slot(node_id, addr, tls)
                slots.append(slot)
            for gone in set(self._slots) - set(ring.ids):
                self._retire(self._slots.pop(gone))
        if not slots:
            self._note_no_node()
        return ring, slots, [by_id[node_id] for node_id in ring.ids]

    def _retire(self, slot) -> None:
        """Closes a member's slot (caller holds ``_lock``), keeping its store's checksum mismatches in the total."""
        store = slot.store
        if store is not None:
            self._retired_mismatches += store.checksum_mismatches
        slot.close()

    def checksum_mismatches(self) -> int:
        """CHECKSUM_MISMATCH answers of every member store, those closed since included (``KvStore.checksum_mismatches``)."""
        with self._lock:
            return self._retired_mismatches + sum(s.store.checksum_mismatches for s in self._slots.values() if s.store is not None)

    # -- no node up --

    def no_node(self) -> Optional[str]:
        """When the registry's cluster has no node up: one line naming the cluster, the Redis (redacted) and the
        clusters that have nodes there, with the fix; None while a node is up, and for a static list."""
        if self.membership.nodes:
            return None
        line, made = self._no_node
        if line is None or time.monotonic() - made > _NO_NODE_REUSE:
            line = self.membership.no_node_line(NO_NODE_FIX)
            self._no_node = (line, time.monotonic())
        return line

    def raise_if_no_node(self, what: str) -> None:
        """Raises :class:`KvasirError` ``WHAT: LINE`` when the cluster has no node up."""
        line = self.no_node()
        if line is not None:
            raise KvasirError(f"{what}: {line}")

    def _note_no_node(self) -> None:
        """A call found no node to go to: its keys are UNAVAILABLE; the line is logged (a warning, at most once a
        minute per store)."""
        now = time.monotonic()
        with self._lock:
            if self._no_node_logged is not None and now - self._no_node_logged < _NO_NODE_LOG_EVERY:
                return
            self._no_node_logged = now
        line = self.no_node()
        if line is not None:
            _log.warning("kvasir: %s", line)

    def transports(self) -> Tuple[str, Optional[str]]:
        """The store's ``transport`` and ``transport_reason`` over the members reached so far (docs/cluster.md):
        "shm" when every one of them is reached through shared memory, "tcp" when every one over TCP (also before
        any was reached), "mixed" otherwise; the reason lists each member on TCP whose transport fell back, as
        ``ID: REASON`` joined by "; " (None when none did)."""
        with self._lock:
            reached = [(slot.id, slot.store) for slot in self._slots.values() if slot.store is not None]
        kinds = {store.transport for _, store in reached}
        kind = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "tcp"
        reasons = [f"{node_id}: {store.transport_reason}" for node_id, store in sorted(reached, key=lambda p: p[0])
                   if store.transport == "tcp" and store.transport_reason]
        return kind, "; ".join(reasons) or None

    @property
    def nodes(self) -> List[dict]:
        return list(self.membership.nodes)

    def place(self, key: bytes, replicas: Optional[int] = None) -> List[str]:
        ring, _ = self._view()
        return ring.place(key, min(replicas or self.replicas, len(ring)))

    def _plan(self, keys, replicas, max_key=512, placed_by: Optional[bytes] = None):
        """Each valid key's replicas over the view (None for an invalid key); with ``placed_by`` (chain
        placement) every valid key takes that key's ranking."""
        ring, slots = self._view()
        r = min(replicas, len(ring))
        root = ring.rank(placed_by, r) if placed_by is not None and r else None
        ranks = []
        for k in keys:
            if not 1 <= len(k) <= max_key:
                ranks.append(None)
            else:
                ranks.append(root if root is not None else ring.rank(k, r) if r else [])
        return ring, slots, ranks

    def _run(self, slot, count, call, force: bool = False) -> list:
        """``call(store)`` on the slot's node. Only a node that failed is marked down: a call skipped for the backoff
        leaves it as it is (re-marking on every skip kept a node that was back out of use for as long as requests kept
        coming, bench/chaos.py's stale reads). A node that was up and fails a whole batch is asked once more, on a new
        connection, before it is marked down: a node restarted at the same address fails the first request on the
        connection its predecessor left, and marking it down then kept it out of puts (copies acknowledged by one
        replica) and reads (the other replica's older copy) for the backoff."""
        up = time.monotonic() >= slot.down_until
        store = slot.get(self._open_store, force)
        if store is None:
            if up or force:   # not skipped: it could not be reached (slot.get marked it down)
                self.membership.wake()
            return [E.UNAVAILABLE] * count
        codes = self._call(slot, store, count, call)
        failed = count and all(c == E.UNAVAILABLE for c in codes)
        if failed and up and not slot.retired:
            codes = self._call(slot, store, count, call)
        # A node that let the whole batch time out (silent: partitioned, stopped) is down too, without a second try:
        # otherwise each request to its keys waited the timeout again until its registration expired (chaos.py).
        failed = count and all(c in (E.UNAVAILABLE, E.TIMEOUT) for c in codes)
        if failed:
            slot.mark_down()
            self.membership.wake()
            self.last_error = store.last_error
        else:
            slot.backoff = 0.25
        return codes

    @staticmethod
    def _call(slot, store, count, call) -> list:
        """``call(store)``; when another thread's view change retired the slot meanwhile (its store closed under this
        request), the keys are UNAVAILABLE, as for a node that went away, instead of "the store is closed" out of the
        whole batch."""
        try:
            return call(store)
        except KvasirError:
            if slot.retired:
                return [E.UNAVAILABLE] * count
            raise

    @staticmethod
    def _combine(answers: list) -> int:
        if not answers:
            return E.UNAVAILABLE
        if E.OK in answers:
            return E.OK
        for a in answers:
            if a not in (E.UNAVAILABLE, E.TIMEOUT):
                return a
        return answers[0]

    # -- operations --

    def put(self, keys: list, views: list, chain: bool, chain_parent: Optional[bytes], replicas: Optional[int] = None,
            placed_by: Optional[bytes] = None, ttl=None) -> List[int]:
        """``placed_by``: chain placement's root key (:func:`kvasir.placement.chain_placement_key`), whose
        nodes take the whole batch (and hold its parent, placed by the same root); ``ttl``: as :meth:`KvStore.put`."""
        replicas = replicas or self.replicas
        ring, slots, ranks = self._plan(keys, replicas, placed_by=placed_by)
        versions = [self.clock.next() for _ in keys] if self.versions and replicas >= 2 else None
        parent_nodes = set(ring.place(placed_by or chain_parent, min(replicas, len(ring)))) if chain and chain_parent and len(ring) else set()

        def request(slot, store, entries):
            parent = chain_parent if slot.id in parent_nodes else None
            return store._put([keys[i] for i, _ in entries], [views[i] for i, _ in entries], chain, parent,
                              versions=None if versions is None else [versions[i] for i, _ in entries], ttl=ttl)

        return self._to_every_replica(ranks, slots, request)

    def _to_every_replica(self, ranks, slots, request) -> List[int]:
        """Sends each key to all its replicas (``ranks``), one ``request(slot, store, entries)`` per node in parallel,
        ``entries`` the (key index, rank) pairs that node takes; a key's code is OK when any replica answered OK."""
        answers = [[None] * len(r) if r else [] for r in ranks]
        groups: Dict[int, List[Tuple[int, int]]] = {}
        for i, r in enumerate(ranks):
            for rank, n in enumerate(r or []):
                groups.setdefault(n, []).append((i, rank))

        def one(n, entries):
            codes = self._run(slots[n], len(entries), lambda s: request(slots[n], s, entries))
            for (i, rank), code in zip(entries, codes):
                answers[i][rank] = code

        self._all(one, groups)
        return [E.INVALID_KEY if r is None else self._combine(answers[i]) for i, r in enumerate(ranks)]

    def _rounds(self, ranks, slots, call) -> Tuple[list, list]:
        """Asks each key's replicas in rank order, one request per node per round, until one has it.
        ``call(store, idx)`` returns (codes, values-or-None) for the keys ``idx``. A key that no replica had
        but that replicas could not answer (skipped for their backoff, or failed: a node that restarted
        fails its first request on the dead connection) asks each of those once more, backoff or not, in
        rank order until one has it, before it is a miss: otherwise a value acknowledged by one replica alone
        reads as a miss while that replica is up (the write-once loss of bench/chaos.py; and with both
        replicas in backoff after restarts, asking only the first of them asked the empty one). A key no
        replica had is NOT_FOUND when any replica answered so; UNAVAILABLE only when none could be asked."""
        results = [E.INVALID_KEY if r is None else E.UNAVAILABLE for r in ranks]
        values = [None] * len(ranks)
        saw_miss = [False] * len(ranks)
        unanswered: List[List[int]] = [[] for _ in ranks]   # the replicas of each key that could not answer, in rank order

        def ask(groups, force):
            def one(n, idx):
                got = {}

                def run(store):
                    codes, vals = call(store, idx)
                    got["values"] = vals
                    return codes
                codes = self._run(slots[n], len(idx), run, force)
                for i, code, value in zip(idx, codes, got.get("values") or [None] * len(idx)):
                    results[i], values[i] = code, value
                    saw_miss[i] = saw_miss[i] or code == E.NOT_FOUND
                    if code == E.UNAVAILABLE and not force:
                        unanswered[i].append(n)
            self._all(one, groups)

        pending = [i for i, r in enumerate(ranks) if r]
        attempt = 0
        while pending:
            groups: Dict[int, List[int]] = {}
            for i in pending:
                groups.setdefault(ranks[i][attempt], []).append(i)
            ask(groups, False)
            attempt += 1
            pending = [i for i in pending if attempt < len(ranks[i]) and results[i] in _RETRY]
        for turn in range(max((len(u) for u in unanswered), default=0)):
            # last tries, one replica per key per turn, so no two answers race for its destination
            last: Dict[int, List[int]] = {}
            for i, nodes in enumerate(unanswered):
                if turn < len(nodes) and results[i] in _RETRY:
                    last.setdefault(nodes[turn], []).append(i)
            if last:
                ask(last, True)
        results = [E.NOT_FOUND if saw_miss[i] and results[i] in _RETRY else results[i] for i in range(len(ranks))]
        return results, values

    def get(self, keys: list, dests: list) -> Tuple[list, list]:
        if self.versions and self.replicas >= 2:
            return get_newest(self, keys, dests)
        _, slots, ranks = self._plan(keys, self.replicas)
        return self._rounds(ranks, slots, lambda store, idx: store._get([keys[i] for i in idx], [dests[i] for i in idx]))

    def key_op(self, opcode: int, keys: list, exists: bool) -> List[int]:
        _, slots, ranks = self._plan(keys, self.replicas)
        if exists:
            return self._rounds(ranks, slots, lambda store, idx: (store._key_op(opcode, [keys[i] for i in idx]), None))[0]
        return self._to_every_replica(ranks, slots, lambda slot, store, entries: store._key_op(opcode, [keys[i] for i, _ in entries]))

    def chain_lookup(self, count: int, root: bytes, call) -> list:
        """A chain lookup (docs/protocol.md, Placement): the chain lives on ``root``'s replicas, asked in
        rank order, one request per node; each is asked for the keys from the first one not yet found
        (``call(store, start)`` -> codes of keys[start:]) and its answer counts up to its first miss. Keys
        past the found prefix are NOT_FOUND (UNAVAILABLE when no replica answered)."""
        ring, slots = self._view()
        results = [E.UNAVAILABLE] * count
        found = 0
        for n in ring.rank(root, min(self.replicas, len(ring))):
            if found == count:
                break
            start = found
            codes = self._run(slots[n], count - start, lambda s: call(s, start))
            if all(c == E.UNAVAILABLE for c in codes):
                continue
            results[start:] = [E.NOT_FOUND] * (count - start)
            while found < count and codes[found - start] >= 0:
                results[found] = codes[found - start]
                found += 1
            if found < count and codes[found - start] not in _RETRY:
                results[found] = codes[found - start]
                break
        return results

    def node_stats(self) -> List[Tuple[dict, Optional[dict], Optional[str]]]:
        _, slots, nodes = self._view_nodes()
        out = []
        for node, slot in zip(nodes, slots):
            store = slot.get(self._open_store)
            if store is None:
                out.append((node, None, "unreachable"))
                continue
            try:
                out.append((node, store.stats(), None))
            except KvasirError as ex:
                out.append((node, None, str(ex)))
        return out

    def node_stores(self) -> List[Tuple[dict, object]]:
        """Every node (sorted by id) with its store, or None when it cannot be reached: key management asks each in turn."""
        _, slots, nodes = self._view_nodes()
        return [(node, slot.get(self._open_store)) for node, slot in zip(nodes, slots)]

    def _all(self, fn, groups: dict) -> None:
        """Runs ``fn(node_index, entries)`` for every node's group, in parallel when there are several."""
        items = list(groups.items())
        if len(items) == 1:
            fn(*items[0])
            return
        for f in [self._pool.submit(fn, n, entries) for n, entries in items]:
            f.result()

    def close(self) -> None:
        self.membership.close()
        self._pool.shutdown(wait=True)
        with self._lock:
            for slot in self._slots.values():
                self._retire(slot)
            self._slots.clear()
