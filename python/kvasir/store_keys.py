"""KvStore's key operations (EXISTS, REMOVE, PIN, UNPIN and their chain forms), node queries (STATS, PING) and
key management (SCAN, INFO, REMOVE_PREFIX): a mixin of :class:`kvasir.store.KvStore`, using its connection,
router and chunking. Each call's requests go one after another on the store's shared connection."""

from typing import List

from . import errors as E
from . import keys as K
from . import protocol as P
from ._batch import same_length as _same_length, split_keys as _split_keys, valid_positions as _valid_positions
from .connection import _Failure, _code, _key_bytes
from .errors import KvasirError, ProtocolError
from .placement import chain_placement_key


def _optional_key(key):
    return None if key is None else _key_bytes(key)


class KeyOps:
    """Key operations of :class:`kvasir.store.KvStore` (see there for codes and cluster behaviour)."""

    # -- key operations --

    def _key_op(self, opcode: int, keys) -> List[int]:
        keys = [_key_bytes(k) for k in keys]
        if self._router is not None:
            self._check_open()
            return self._router.key_op(opcode, keys, exists=opcode == P.Opcode.EXISTS)
        results = [E.OK] * len(keys)
        self._check_open()
        hello = self.hello
        todo = _valid_positions(keys, results, hello)
        chunks = _split_keys(todo, keys, hello)

        def run(conn, start, end):
            idx = todo[start:end]
            reply = conn.call(opcode, P.encode_key_batch([keys[i] for i in idx]))
            if len(reply.statuses) != len(idx):
                raise _Failure(E.PROTOCOL_ERROR, "reply with a wrong count")
            for i, s in zip(idx, reply.statuses):
                results[i] = _code(s)

        self._run_indexed(chunks, todo, results, run)
        return results

    def batch_is_exist(self, keys) -> List[int]:
        """Per key: 1 present, 0 absent, -1 error (invalid key, node unavailable, timeout)."""
        return [1 if c == E.OK else 0 if c == E.NOT_FOUND else -1 for c in self._key_op(P.Opcode.EXISTS, keys)]

    def batch_is_exist_chain(self, keys, chain_root=None) -> List[int]:
        """EXISTS of a chain (keys in chain order): as :meth:`batch_is_exist`, but every key past the first
        miss is 0 (what counts is the stored prefix); in a cluster the chain is looked up on the nodes of
        ``chain_root`` (default the first key), one request per node tried, as chain placement stored it."""
        keys = [_key_bytes(k) for k in keys]
        codes = self._chain_lookup(keys, chain_root, lambda s, start: s._key_op(P.Opcode.EXISTS, keys[start:]))
        return [1 if c == E.OK else 0 if c == E.NOT_FOUND else -1 for c in codes]

    def batch_get_chain_into(self, keys, ptrs, sizes, chain_root=None) -> List[int]:
        """GET of a chain: as :meth:`batch_get_into`, but every key past the first miss is NOT_FOUND, and
        in a cluster the chain is read from the nodes of ``chain_root`` as :meth:`batch_is_exist_chain` does."""
        _same_length(keys, ptrs, sizes)
        keys = [_key_bytes(k) for k in keys]
        with self._lock:
            views = [[self._checked_view(p, s)] for p, s in zip(ptrs, sizes)]
        return self._chain_lookup(keys, chain_root, lambda s, start: s._get(keys[start:], views[start:])[0])

    def _chain_lookup(self, keys: list, chain_root, call) -> List[int]:
        if not keys:
            return []
        if self._router is not None:
            self._check_open()
            return self._router.chain_lookup(len(keys), chain_placement_key(keys[0], _optional_key(chain_root), False), call)
        codes = call(self, 0)
        first = next((i for i, c in enumerate(codes) if c < 0), len(codes))
        return codes[:first + 1] + [E.NOT_FOUND] * (len(codes) - first - 1)

    def is_exist(self, key) -> int:
        """1 present, 0 absent, -1 error."""
        return self.batch_is_exist([key])[0]

    def remove(self, key) -> int:
        """Removes ``key``: 0, ``NOT_FOUND`` (-1) when absent, or another negative code."""
        return self._key_op(P.Opcode.REMOVE, [key])[0]

    def batch_remove(self, keys) -> List[int]:
        """Removes keys: 0, ``NOT_FOUND`` (-1) or another negative code per key."""
        return self._key_op(P.Opcode.REMOVE, keys)

    def batch_pin(self, keys) -> List[int]:
        """Adds one pin per key (a pinned value is never evicted): 0 or negative per key."""
        return self._key_op(P.Opcode.PIN, keys)

    def batch_unpin(self, keys) -> List[int]:
        """Drops one pin per key: 0 or negative per key."""
        return self._key_op(P.Opcode.UNPIN, keys)

    # -- node --

    def _simple(self, opcode: int, meta: bytes):
        return self._key_request(opcode, meta, raw=False)

    def stats(self) -> dict:
        """The node's counters (STATS), by name; in a cluster, each counter summed over the nodes
        that answered. Raises :class:`KvasirError` on failure."""
        if self._router is not None:
            total = {}
            for _, stats, _ in self.node_stats():
                for name, value in (stats or {}).items():
                    total[name] = total.get(name, 0) + value
            return total
        return {s.name: s.value for s in self._simple(P.Opcode.STATS, b"").stats}

    def ping(self, echo: bytes = b"") -> bytes:
        """Round trip to the node (in a cluster: to each node); returns the echo. Raises :class:`KvasirError` on failure."""
        if self._router is not None:
            self._router.raise_if_no_node("ping")
            for node, _, error in self.node_stats():
                if error is not None:
                    raise KvasirError(f"node {node['id']} ({node['addr']}): {error}")
            return bytes(echo)
        return self._simple(P.Opcode.PING, bytes(echo)).echo

    # -- key management --

    def _key_request(self, opcode: int, meta: bytes, raw: bool = True):
        """One request without payload; its reply's metadata (undecoded bytes with ``raw``). Raises KvasirError."""
        conn = None
        try:
            conn = self._connection()
            return bytes(conn.call_raw(opcode, meta)) if raw else conn.call(opcode, meta)
        except (_Failure, ProtocolError) as ex:
            self._drop(conn)
            raise KvasirError(f"{P.Opcode(opcode).name} failed: {ex}") from None

    def _check_prefix(self, prefix) -> bytes:
        prefix = _key_bytes(prefix)
        limit = self.hello.max_key_bytes if self.hello is not None else P.MAX_KEY_BYTES
        if len(prefix) > limit:
            raise ValueError(f"prefix of {len(prefix)} bytes is longer than the {limit}-byte key limit")
        return prefix

    def scan(self, prefix=b"", cursor: bytes = b"", page_size: int = 1000):
        """One page of the keys starting with ``prefix`` (b"": every key), in byte order: ``(entries, cursor, tiers)``,
        ``entries`` a list of ``(key, length)``, ``cursor`` to pass to the next call (b"" when the listing is done),
        ``tiers`` the tiers listed (``["dram"]``: keys only on disk or the shared tier are not listed). At most
        ``page_size`` keys (1..the node's batch limit), so the node never holds its lock for more than a page.
        In a cluster the pages walk every node in turn (the cursor names the node). ValueError for bad input."""
        self._check_open()
        prefix = self._check_prefix(prefix)
        if self._router is not None:
            self._router.raise_if_no_node("scan")
            return K.cluster_scan(self._router.node_stores(), prefix, bytes(cursor), page_size)
        limit = self.hello.max_batch_keys
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= limit:
            raise ValueError(f"page size {page_size!r} is outside 1..{limit} (the node's batch limit)")
        if len(cursor) > self.hello.max_key_bytes:
            raise ValueError(f"cursor of {len(cursor)} bytes is not one a scan returned")
        return K.decode_scan_reply(self._key_request(P.Opcode.SCAN, K.encode_scan(prefix, bytes(cursor), page_size)))

    def list_keys(self, prefix=b"", page_size: int = 1000):
        """Every ``(key, length)`` starting with ``prefix``, fetched a page at a time (see :meth:`scan`)."""
        cursor = b""
        while True:
            entries, cursor, _ = self.scan(prefix, cursor, page_size)
            yield from entries
            if not cursor:
                return

    def info(self, keys) -> List["K.KeyInfo"]:
        """Per key: tier, length, age, time to live, pins, leases and namespace (:class:`kvasir.keys.KeyInfo`);
        ``status`` 0 when found, 1 when not. In a cluster each key is asked of the nodes holding its copies."""
        self._check_open()
        keys = [_key_bytes(k) for k in keys]
        if self._router is not None:
            out = []
            stores = dict((n["id"], s) for n, s in self._router.node_stores())
            for key in keys:
                found = None
                for node_id in self.placement(key):
                    store = stores.get(node_id)
                    if store is None:
                        continue
                    found = store.info([key])[0]
                    if found.status == 0:
                        break
                out.append(found or K.KeyInfo(int(P.WireStatus.NOT_FOUND), "none", 0, 0, 0, 0, 0, None, 0, 0, "cluster"))
            return out
        hello = self.hello
        out = []
        for start in range(0, len(keys), hello.max_batch_keys):
            chunk = keys[start:start + hello.max_batch_keys]
            valid = [k for k in chunk if 1 <= len(k) <= hello.max_key_bytes]
            answers = iter(K.decode_info_reply(self._key_request(P.Opcode.INFO, P.encode_key_batch(valid)), len(valid)) if valid else [])
            for k in chunk:
                info = next(answers) if 1 <= len(k) <= hello.max_key_bytes else K.KeyInfo(int(P.WireStatus.INVALID_KEY), "none", 0, 0, 0, 0, 0, None, 0, 0)
                info.node = hello.node_id
                out.append(info)
        return out

    def remove_prefix(self, prefix) -> int:
        """Removes every key starting with ``prefix`` from every tier of the node (in a cluster: of every node);
        returns how many. The node works a page at a time, so writers are never blocked long. Raises
        :class:`KvasirError` naming a node that could not do it."""
        self._check_open()
        prefix = self._check_prefix(prefix)
        if self._router is not None:
            self._router.raise_if_no_node("remove by prefix")
            total = 0
            for node, store in self._router.node_stores():
                if store is None:
                    raise KvasirError(f"node {node['id']} ({node['addr']}) is unreachable: its keys were not removed")
                total += store.remove_prefix(prefix)
            return total
        removed, failed = K.decode_remove_prefix_reply(self._key_request(P.Opcode.REMOVE_PREFIX, K.encode_remove_prefix(prefix)))
        if failed:
            raise KvasirError(f"node {self.node_id}: {failed} keys could not be removed (a tier failed; see its health report), {removed} were")
        return removed

    def remove_all(self) -> int:
        """Removes every key of the node (in a cluster: of every node); returns how many."""
        return self.remove_prefix(b"")

    def quota_message(self, key) -> str:
        """Why a PUT of ``key`` answered QUOTA_EXCEEDED: one line naming the namespace and its budget."""
        return K.quota_message(_key_bytes(key), self.info([key])[0])
