"""Cluster membership: the Redis registry (its URL forms, its Lua scripts, a polling view of the live nodes, the
cluster-wide settings) or a static list of nodes. The Redis layout is that of the .NET ``RedisClusterRegistry``
(docs/cluster.md), and the scripts are the same files (``registry_lua/*.lua``)."""

import json
import logging
import os
import threading
import time
from importlib import resources
from typing import Callable, List, Optional, Tuple
from urllib.parse import unquote

from .errors import KvasirError

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


def cluster_names(client, limit: int = 50) -> List[str]:
    """The names of the clusters that have node records in this Redis (a SCAN of ``kvasir:{*}:records``), at most
    ``limit``, sorted: what to suggest when a cluster name finds no node (.NET ``ListClusterNamesAsync``)."""
    names = set()
    for key in client.scan_iter(match="kvasir:{*}:records", count=500):
        k = key.decode("utf-8", "replace")
        open_, close = k.find("{"), k.rfind("}")
        if 0 <= open_ < close:
            names.add(k[open_ + 1:close])
        if len(names) >= limit:
            break
    return sorted(names)


def no_node_line(cluster: str, shown_url: str, names: Optional[List[str]], fix: str, error: str = "") -> str:
    """The one line a client says when cluster ``cluster`` has no node up: where it looked (``shown_url``, redacted)
    and the clusters with nodes there (``names``; None when they could not be listed, ``error`` says why). The same
    words as the .NET ``NoNodeReport.Message``."""
    head = f"no node is up in cluster '{cluster}' at {shown_url}"
    if names is None:
        return f"{head} (the clusters there could not be listed: {error})"
    others = [n for n in names if n != cluster]
    own = " (its nodes registered there are all down: kvasir status lists them)" if cluster in names else ""
    if not others:
        return f"{head}{own}; no other cluster has nodes registered there" + ("" if own else " (is this the Redis the nodes use?)")
    return f"{head}{own}; clusters with nodes there: {', '.join(others)} ({fix})"


# How long nodes a reset registry forgot are kept while they register again: twice the default heartbeat TTL.
REGISTRY_RESET_GRACE = 10.0

# The longest wait between polls after unexpected errors (a damaged registry), seconds (the .NET MembershipWatcher.MaxBackoff).
MAX_BACKOFF = 5.0


def _valid_id(text) -> bool:
    return isinstance(text, str) and 0 < len(text) <= 255 and all("!" <= c <= "~" for c in text)


class StaticMembership:
    """A fixed list of ``host:port`` nodes; each node's id is its address."""

    def __init__(self, addresses: List[str]):
        self.nodes = [{"id": a, "addr": a} for a in addresses]
        self.error = None
        self.failures = 0

    def add(self, record: dict) -> None:
        if all(n["id"] != record["id"] for n in self.nodes):
            self.nodes = self.nodes + [record]

    def wake(self) -> None:
        pass

    def no_node_line(self, fix: str) -> Optional[str]:
        """None: a static list has no registry to look in (see :meth:`RedisMembership.no_node_line`)."""
        return None

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
        self.name, self.shown_url = name, redact(url)
        self._keys = [f"kvasir:{{{name}}}:{k}" for k in ("members", "records", "epoch")]
        self._poll = poll
        self._on_change = on_change
        self._on_settings = None   # follow_settings: called with the new settings when a poll finds them changed
        self._settings = None
        self._bad_settings = None
        self.error = None    # the last poll's error (registry unreachable or damaged); None while polls succeed
        self.failures = 0    # polls that failed, whatever the cause (the .NET MembershipWatcher.Failures)
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

    def follow_settings(self, current: dict, on_change: Callable[[dict], None]) -> None:
        """From now on every poll reads the cluster's settings too (one HGETALL), starting from ``current`` (what the
        caller read when it connected), and calls ``on_change(settings)`` when they change, so a running client sees
        ``kvasir cluster set`` (the .NET ``MembershipWatcher.FollowSettings``)."""
        self._settings, self._on_settings = dict(current), on_change

    def _refresh_settings(self) -> None:
        settings = self.settings()
        if settings == self._settings:
            return
        try:
            self._on_settings(settings)
        except KvasirError as ex:   # a value this build cannot use: keep the last good settings, say so once
            if str(ex) != self._bad_settings:
                _log.warning("kvasir: cluster %s: keeping the settings last read: %s", self.name, ex)
            self._bad_settings = str(ex)
            return
        self._settings, self._bad_settings = settings, None

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
        backoff = 0.0   # after an unexpected error: doubling from the poll interval up to MAX_BACKOFF
        while not self._stop.is_set():
            if backoff:
                self._stop.wait(backoff)
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
                if self._on_settings is not None:
                    self._refresh_settings()
                self.error = None
                backoff = 0.0
            except self._redis_errors as ex:
                self.failures += 1
                self.error = str(ex)
            except KvasirError as ex:   # settings unreadable (settings() wraps the Redis error)
                self.failures += 1
                self.error = str(ex)
            except Exception as ex:  # noqa: BLE001 - the thread must outlive any one poll
                # Not a lost registry: a damaged one (a key of another shape), or an on_change callback that raised. The
                # view is kept and the thread goes on, slower, so it follows again once the cause is gone.
                self.failures += 1
                reason = f"{type(ex).__name__}: {ex}"
                backoff = min(backoff * 2, MAX_BACKOFF) if backoff else self._poll
                if reason != self.error:
                    _log.error("kvasir: cluster %s: membership poll failed, keeping the last view and retrying (every %.0f s "
                               "at most)", self.name, MAX_BACKOFF, exc_info=True)
                self.error = reason

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

    def no_node_line(self, fix: str) -> Optional[str]:
        """When no node of this cluster is up: the one line naming the cluster, the Redis and the clusters that have
        nodes there (the usual cause is a wrong or forgotten cluster name), ending with ``fix``; else None."""
        if self.nodes:
            return None
        try:
            names, error = cluster_names(self._redis), ""
        except self._redis_errors as ex:
            names, error = None, str(ex)
        return no_node_line(self.name, self.shown_url, names, fix, error)

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
