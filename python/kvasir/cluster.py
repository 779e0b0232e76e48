"""Cluster mode of :class:`kvasir.KvStore`: membership (Redis or a static list), routing, replicas.

A routed store places every key on its nodes by rendezvous hashing (:mod:`kvasir.placement`), sends
one request per node in parallel and puts the per-key results back in the caller's order. With
``replicas=R`` a put goes to the key's top R nodes (0 when any of them stored it), and gets and
exists try them in rank order until one has the key; a node that fails mid-batch only turns its
keys into retries on the next replica. The Redis layout is that of the .NET ``RedisClusterRegistry``
(docs/cluster.md), and the scripts are the same files (``registry_lua/*.lua``).
"""

import json
import logging
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from . import errors as E
from . import node_binary
from .errors import KvasirError
from .placement import Ring
from .replicas import HybridClock, get_newest

_log = logging.getLogger("kvasir")


def registry_script(name: str) -> str:
    """The text of the registry's Lua script ``name`` (``registry_lua/NAME.lua``, package data): the one copy, which
    the .NET registry embeds too (src/Kvasir.Cluster/RegistryScripts.cs), sent to Redis unchanged."""
    return (resources.files(__package__) / "registry_lua" / f"{name}.lua").read_bytes().decode("utf-8")


# KEYS: members records epoch -> {epoch, id1, json1, ...}
_READ = registry_script("read")
# KEYS: members epoch -> {epoch, live}
_POLL = registry_script("poll")


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages."""
    start, at = url.find("://"), url.rfind("@")
    if start < 0 or at < start:
        return url
    info = url[start + 3:at]
    user = info.split(":", 1)[0] + ":" if ":" in info else ""
    return f"{url[:start + 3]}{user}***@{url[at + 1:]}"


def _endpoint(text: str, default_port: int, url: str) -> Tuple[str, int]:
    host, port = text.strip(), default_port
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            raise KvasirError(f"{redact(url)!r}: {text!r} is not HOST[:PORT]")
        rest, host = host[close + 1:], host[1:close]
        if rest:
            if not rest.startswith(":"):
                raise KvasirError(f"{redact(url)!r}: {text!r} is not HOST[:PORT]")
            port = rest[1:]
    elif ":" in host:
        host, port = host.rsplit(":", 1)
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not host or not 0 < port <= 65535:
        raise KvasirError(f"{redact(url)!r}: {text!r} is not HOST[:PORT]" if host else f"{redact(url)!r} has no host")
    return host, port


def connect_registry(url: str, timeout: float):
    """A redis-py client for a registry URL, the forms the .NET registry accepts (docs/cluster.md):
    ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…[?ca=/path/ca.pem]`` (TLS: the server's
    certificate must chain to that CA, or to the system's roots, and name the host) and
    ``redis+sentinel://[[user]:password@]h1[:p1],h2[:p2]/master[/db]`` (the master the sentinels name,
    asked again on every new connection, so a failover is followed)."""
    import redis  # noqa: PLC0415 - only cluster mode needs it

    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in ("redis", "rediss", "redis+sentinel"):
        raise KvasirError(f"{redact(url)!r} is not a redis://, rediss:// or redis+sentinel:// URL")
    rest, _, query = rest.partition("?")
    ca = None
    for pair in filter(None, query.split("&")):
        name, eq, value = pair.partition("=")
        if name != "ca" or not eq or not value:
            raise KvasirError(f"{redact(url)!r}: unknown parameter {pair!r} (the one accepted is ca=/path/to/ca.pem)")
        ca = unquote(value)
    if ca is not None and scheme != "rediss":
        raise KvasirError(f"{redact(url)!r}: a CA file applies to TLS only; use rediss://")
    if ca is not None and not os.access(ca, os.R_OK):
        raise KvasirError(f"CA file {ca!r} cannot be read")
    user = password = None
    info, at, hosts_path = rest.rpartition("@")
    if at:
        if ":" in info:
            user, password = (unquote(x) for x in info.split(":", 1))
        else:
            password = unquote(info)
    user, password = user or None, password or None
    hosts, _, path = hosts_path.partition("/")
    path = path.rstrip("/")
    sentinel = scheme == "redis+sentinel"
    endpoints = [_endpoint(h, 26379 if sentinel else 6379, url) for h in hosts.split(",")]
    if not sentinel and len(endpoints) > 1:
        raise KvasirError(f"{redact(url)!r}: several hosts need redis+sentinel://SENTINEL1,SENTINEL2/MASTER")
    master = None
    if sentinel:
        master, _, path = path.partition("/")
        if not master:
            raise KvasirError(f"{redact(url)!r}: name the master: redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER[/DB]")
    if path and not path.isdigit():
        raise KvasirError(f"{redact(url)!r}: {path!r} is not a database number")
    common = dict(username=user, password=password, db=int(path or 0), socket_timeout=timeout,
                  socket_connect_timeout=timeout)
    if sentinel:
        from redis.sentinel import Sentinel  # noqa: PLC0415
        sentinels = Sentinel(endpoints, socket_timeout=timeout, socket_connect_timeout=timeout)
        return sentinels.master_for(master, **common)
    if scheme == "rediss":
        common.update(ssl=True, ssl_cert_reqs="required", ssl_ca_certs=ca, ssl_check_hostname=True)
    return redis.Redis(host=endpoints[0][0], port=endpoints[0][1], **common)


# How long nodes a reset registry forgot are kept while they register again: twice the default heartbeat TTL.
REGISTRY_RESET_GRACE = 10.0


def _valid_id(text) -> bool:
    return isinstance(text, str) and 0 < len(text) <= 255 and all("!" <= c <= "~" for c in text)


class StaticMembership:
    """A fixed list of ``host:port`` nodes; each node's id is its address."""

    def __init__(self, addresses: List[str]):
        self.nodes = [{"id": a, "addr": a} for a in addresses]
        self.error = None

    def add(self, record: dict) -> None:
        if all(n["id"] != record["id"] for n in self.nodes):
            self.nodes = self.nodes + [record]

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


def cluster_replicas(settings: dict) -> int:
    """The replication factor a cluster's settings name; 1 when they name none. A bad value is an error naming it."""
    text = settings.get("replicas")
    if text is None:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise KvasirError(f"cluster setting replicas={text!r} must be a whole number from 1 to 16 (fix it with kvasir cluster set)")
    return int(text)


class RedisMembership:
    """Live nodes of cluster ``name`` in Redis, followed by a polling thread (epoch + live count, every
    ``poll`` seconds; the full list is read only when they change, or every 30 s). If Redis goes away
    the last view is kept."""

    def __init__(self, url: str, name: str, poll: float, timeout: float,
                 on_change: Optional[Callable[[], None]] = None):
        try:
            import redis  # noqa: PLC0415 - only cluster mode needs it
        except ImportError:
            raise KvasirError("a redis:// cluster needs the redis package (pip install redis, "
                              "or apt-get install python3-redis)") from None
        if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name):
            raise KvasirError(f"cluster name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ . -")
        self._redis_errors = (redis.RedisError, OSError)
        self._redis = connect_registry(url, timeout)
        self._keys = [f"kvasir:{{{name}}}:{k}" for k in ("members", "records", "epoch")]
        self._poll = poll
        self._on_change = on_change
        self.error = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        try:
            self.epoch, self.nodes = self._read()
        except self._redis_errors as ex:
            self._redis.close()
            raise KvasirError(f"cannot read cluster {name!r} from {redact(url)}: {ex}") from None
        self._last_full = time.monotonic()
        self._forgotten, self._forgotten_since = None, 0.0
        self._thread = threading.Thread(target=self._loop, name="kvasir-membership", daemon=True)
        self._thread.start()

    def settings(self) -> dict:
        """The cluster-wide settings (``kvasir cluster set``; docs/cluster.md § Cluster settings): name -> value."""
        try:
            raw = self._redis.hgetall(self._keys[0].replace(":members", ":settings"))
        except self._redis_errors as ex:
            raise KvasirError(f"cannot read the settings of cluster {self._keys[0][8:-9]!r}: {ex}") from None
        return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}

    def _read(self) -> Tuple[int, List[dict]]:
        items = self._redis.eval(_READ, 3, *self._keys)
        epoch = int(items[0])
        nodes = []
        for i in range(1, len(items) - 1, 2):
            node_id = items[i].decode("ascii", "replace")
            try:
                record = json.loads(items[i + 1])
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("id") == node_id and _valid_id(node_id) and isinstance(record.get("addr"), str):
                nodes.append(record)
        return epoch, sorted(nodes, key=lambda n: n["id"])

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                epoch, live = self._redis.eval(_POLL, 2, self._keys[0], self._keys[2])
                if int(epoch) != self.epoch or int(live) != len(self.nodes) or time.monotonic() - self._last_full > 30:
                    new_epoch, nodes = self._read()
                    nodes = self._keep_forgotten(new_epoch, nodes)
                    self.epoch = new_epoch
                    self._last_full = time.monotonic()
                    if [(n["id"], n["addr"]) for n in nodes] != [(n["id"], n["addr"]) for n in self.nodes]:
                        self.nodes = nodes
                        if self._on_change:
                            self._on_change()
                self.error = None
            except self._redis_errors as ex:
                self.error = str(ex)

    def _keep_forgotten(self, new_epoch: int, nodes: List[dict]) -> List[dict]:
        """After a registry reset (a Redis restarted without persistence: the epoch went backwards), the nodes it
        forgot stay in the view until they have registered again or REGISTRY_RESET_GRACE has passed, so keys are not
        placed on a partial membership while the nodes' heartbeats refill it (the .NET watcher does the same)."""
        now = time.monotonic()
        if new_epoch < self.epoch and self._forgotten is None and self.nodes:
            self._forgotten, self._forgotten_since = list(self.nodes), now
        if self._forgotten is None:
            return nodes
        present = {n["id"] for n in nodes}
        missing = [n for n in self._forgotten if n["id"] not in present]
        if not missing or now - self._forgotten_since > REGISTRY_RESET_GRACE:
            self._forgotten = None
            return nodes
        return sorted(nodes + missing, key=lambda n: n["id"])

    def refresh(self) -> None:
        """Reads the whole membership now (raises on a Redis error)."""
        self.epoch, self.nodes = self._read()

    def add(self, record: dict) -> None:
        pass

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._redis.close()


class _Slot:
    """One member: a single-node KvStore opened on first use; after a failure it is skipped for a
    backoff (0.25 s doubling to 4 s) so its keys go to replicas at once."""

    def __init__(self, node_id: str, addr: str, tls: bool = False):
        self.id, self.addr, self.tls = node_id, addr, tls
        self.store = None
        self.down_until = 0.0
        self.backoff = 0.25
        self.lock = threading.Lock()

    def get(self, open_store, force: bool = False):
        """The node's store; None while it is down (unless ``force``: a last try, backoff or not) or unreachable."""
        if not force and time.monotonic() < self.down_until:
            return None
        with self.lock:
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
            if self.store is not None:
                self.store.close()
                self.store = None


_RETRY = (E.NOT_FOUND, E.UNAVAILABLE, E.TIMEOUT, E.PROTOCOL_ERROR)


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

    # -- view --

    def _view(self):
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
                        slot.close()
                    slot = self._slots[node_id] = _Slot(node_id, addr, tls)
                slots.append(slot)
            for gone in set(self._slots) - set(ring.ids):
                self._slots.pop(gone).close()
        return ring, slots

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
        codes = call(store)
        failed = count and all(c == E.UNAVAILABLE for c in codes)
        if failed and up:
            codes = call(store)
            failed = all(c == E.UNAVAILABLE for c in codes)
        if failed:
            slot.mark_down()
            self.membership.wake()
            self.last_error = store.last_error
        else:
            slot.backoff = 0.25
        return codes

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
        answers = [[None] * len(r) if r else [] for r in ranks]
        groups: Dict[int, List[Tuple[int, int]]] = {}
        for i, r in enumerate(ranks):
            for rank, n in enumerate(r or []):
                groups.setdefault(n, []).append((i, rank))

        def one(n, entries):
            slot = slots[n]
            parent = chain_parent if slot.id in parent_nodes else None
            codes = self._run(slot, len(entries), lambda s: s._put([keys[i] for i, _ in entries], [views[i] for i, _ in entries], chain, parent,
                                                                   versions=None if versions is None else [versions[i] for i, _ in entries],
                                                                   ttl=ttl))
            for (i, rank), code in zip(entries, codes):
                answers[i][rank] = code

        self._all(one, groups)
        return [E.INVALID_KEY if ranks[i] is None else self._combine(answers[i]) for i in range(len(keys))]

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
        answers = [[None] * len(r) if r else [] for r in ranks]
        groups: Dict[int, List[Tuple[int, int]]] = {}
        for i, r in enumerate(ranks):
            for rank, n in enumerate(r or []):
                groups.setdefault(n, []).append((i, rank))

        def each(n, entries):
            codes = self._run(slots[n], len(entries), lambda s: s._key_op(opcode, [keys[i] for i, _ in entries]))
            for (i, rank), code in zip(entries, codes):
                answers[i][rank] = code

        self._all(each, groups)
        return [E.INVALID_KEY if ranks[i] is None else self._combine(answers[i]) for i in range(len(keys))]

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
        _, slots = self._view()
        out = []
        for node, slot in zip(sorted(self.nodes, key=lambda n: n["id"]), slots):
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
        _, slots = self._view()
        return [(node, slot.get(self._open_store)) for node, slot in zip(sorted(self.nodes, key=lambda n: n["id"]), slots)]

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
                slot.close()
            self._slots.clear()


class EmbeddedNode:
    """A ``kvasir serve`` child process that lends this client's memory to the cluster.

    The Python package cannot host the .NET node inside the interpreter, so the node runs as a child
    process tied to this one: it is stopped (SIGTERM) by :meth:`close` and, on Linux, killed if this
    process dies (PR_SET_PDEATHSIG). It registers in Redis like any other node (kind "embedded").
    The command is ``KVASIR_BIN`` (e.g. ``"dotnet /opt/kvasir/kvasir.dll"``), else ``kvasir`` on
    PATH, else this checkout's ``.build/cli/kvasir.dll``."""

    def __init__(self, capacity, data_plane_addr: str, client_id: Optional[str], redis_url: Optional[str],
                 cluster: str, auth_key_hex: Optional[str], timeout: float = 30.0):
        host, _, port = data_plane_addr.rpartition(":")
        if not host or not port.isdigit():
            raise KvasirError(f"data_plane_addr {data_plane_addr!r} is not HOST:PORT")
        args = [*self._command(), "serve", "--host", host.strip("[]"), "--port", port, "--memory", str(capacity),
                "--log-level", "warning"]
        if redis_url:
            args += ["--redis", redis_url, "--cluster", cluster, "--kind", "embedded"]
        if client_id:
            args += ["--node-id", client_id]
        if auth_key_hex:
            args += ["--auth-key", auth_key_hex]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            line = self.proc.stdout.readline().decode("utf-8", "replace")
            if line.startswith("kvasir: serving on "):
                addr = line.split()[3]
                self.addr = addr
                self.node_id = client_id or addr
                break
            if line:
                lines.append(line.rstrip())
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                self.close()
                raise KvasirError(f"embedded node did not start: {' | '.join(lines[-5:])}")
        # Keep draining its output so a chatty node never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _command() -> List[str]:
        command, why = node_binary.locate()
        if command is None:
            raise KvasirError(f"cannot start an embedded node: {why}")
        return command

    def _drain(self) -> None:
        try:
            for _ in self.proc.stdout:
                pass
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _die_with_parent() -> None:
    try:
        import ctypes  # noqa: PLC0415
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_cluster(store, cfg, capacity, data_plane_addr, client_id, poll, explicit_servers) -> None:
    """Makes ``store`` route over a cluster (KvStore's constructor, when a registry, several servers
    or an embedded node are configured): starts the embedded node if asked, follows the membership,
    and gives the store its Router. The embedded node is stopped again if joining fails."""
    if capacity is not None:
        key_hex = store._auth_key.hex() if store._auth_key else None
        store._embedded = EmbeddedNode(capacity, data_plane_addr, client_id, cfg["redis_url"], cfg["cluster"], key_hex)
    try:
        if cfg["redis_url"]:
            membership = RedisMembership(cfg["redis_url"], cfg["cluster"], poll, store.connect_timeout)
            if store._embedded is not None:
                deadline = time.monotonic() + store.connect_timeout
                while all(n["id"] != store._embedded.node_id for n in membership.nodes) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    membership.refresh()
        else:
            # Without Redis an embedded node joins the servers given explicitly (or stands alone).
            listed = store.servers if (capacity is None or explicit_servers) else []
            membership = StaticMembership([f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listed])
            if store._embedded is not None:
                membership.add({"id": store._embedded.node_id, "addr": store._embedded.addr})
    except BaseException:
        if store._embedded is not None:
            store._embedded.close()
        raise

    def open_store(addr, node_tls=False):
        if node_tls and store._tls is None:
            raise KvasirError(f"node {addr} requires TLS (its registry record says tls): set tls_ca (KVASIR_TLS_CA)")
        # The store's transport for every member: with "auto" (the default) a member on this host whose arena maps is
        # reached through shared memory, the others over TCP; with "shm" a member that cannot be mapped is unreachable
        # (its keys go to replicas), as in the .NET cluster client (docs/cluster.md).
        return type(store)(addr, store._auth_key.hex() if store._auth_key else None, store._mode,
                           connect_timeout=store.connect_timeout, request_timeout=store.request_timeout, verify_crc=store.verify_crc,
                           **(store._tls.options() if store._tls is not None else {}))

    if store.replicas is None:   # the cluster's setting (kvasir cluster set replicas=N), else 1
        try:
            store.replicas = cluster_replicas(membership.settings()) if isinstance(membership, RedisMembership) else 1
        except BaseException:
            membership.close()
            if store._embedded is not None:
                store._embedded.close()
            raise
    store._router = Router(membership, store.replicas, open_store, store.replica_versions)
    store.hello = None
