"""Versioned replicas and read repair for a cluster :class:`kvasir.cluster.Router` (docs/cluster.md § Versions).

With R >= 2 every put carries a version from the client's :class:`HybridClock` (PUT flag VERSION, granted in HELLO as
feature bit 0x4), which the node keeps as the value's version in every tier. A get asks every replica of each key at
once, keeps the newest copy (ties: the better rank), and writes it back, with its version, to the replicas that
answered "not found" or an older version. Keys that no replica had while one could not answer go through the router's
rank-order rounds, whose last try reaches a replica in its backoff.
"""
import threading
import time
from typing import Dict, List, Tuple

from . import errors as E
from .errors import KvasirError

# answers after which a key with no winner is asked of its replicas again in rank order (a copy that failed the
# client's CRC check is one: the next replica's copy may be good)
_UNANSWERED = (E.UNAVAILABLE, E.TIMEOUT, E.PROTOCOL_ERROR, E.CHECKSUM_MISMATCH)


class HybridClock:
    """(Unix milliseconds << 16) | a counter: always larger than every version handed out or seen
    (:meth:`at_least`), so versions of different hosts order by wall-clock time. The nodes run the same clock."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        wall = (time.time_ns() // 1_000_000) << 16
        with self._lock:
            self._last = max(self._last + 1, wall)
            return self._last

    def at_least(self, version: int) -> None:
        with self._lock:
            self._last = max(self._last, version)


def _deliver(pieces, value) -> int:
    """Copies a winner read from a lower-ranked replica into the caller's pieces: its length, or BUFFER_TOO_SMALL."""
    if sum(len(p) for p in pieces) < len(value):
        return E.BUFFER_TOO_SMALL
    at = 0
    for p in pieces:
        if at >= len(value):
            break
        n = min(len(p), len(value) - at)
        p[:n] = value[at:at + n]
        at += n
    return len(value)


def _source(dest, value, length) -> list:
    """The winner's bytes as put pieces: its buffer, or the caller's pieces trimmed to its length."""
    if value is not None:
        return [memoryview(value)]
    out, left = [], length
    for p in dest:
        if left <= 0:
            break
        out.append(p[:min(len(p), left)])
        left -= len(out[-1])
    return out


def _winner_ttls(router, slots, keys: list, winners) -> Dict[int, int]:
    """Each key to repair's remaining time to live on its winner's node, in whole seconds (0: never expires), by INFO:
    GET carries no TTL, and a copy written back without one outlived the value. Keys whose TTL cannot be learnt (the
    winner's node gone, the value expired since) are left out: not repaired now."""
    by_node: Dict[int, List[int]] = {}
    for i, n in winners:
        by_node.setdefault(n, []).append(i)
    out: Dict[int, int] = {}

    def one(n, idx):
        store = slots[n].get(router._open_store)
        if store is None:
            return
        try:
            infos = store.info([keys[i] for i in idx])
        except KvasirError:
            return
        for i, info in zip(idx, infos):
            if info.status == 0:
                out[i] = -(-info.ttl_ms // 1000)
    router._all(one, by_node)
    return out


def _reread_mismatches(router, slots, ranks, keys: list, answers) -> None:
    """Reads once more, into buffers of their own, the copies that failed the client's CRC check (CHECKSUM_MISMATCH):
    passed over, a newest copy corrupted on its way lost to an older version on another replica, and the get returned
    the value as it was before its last write. A copy that fails again stays a mismatch (as the .NET client)."""
    groups: Dict[int, List[Tuple[int, int]]] = {}
    for i, a in enumerate(answers):
        for rank, answer in enumerate(a):
            if answer is not None and answer[0] == E.CHECKSUM_MISMATCH:
                groups.setdefault(ranks[i][rank], []).append((i, rank))
    if groups:
        _read_versions(router, slots, keys, groups, answers, lambda i, rank: None, hits_only=True)


def _read_versions(router, slots, keys: list, groups, answers, dest_of, hits_only: bool = False) -> None:
    """Reads each node's ``groups`` entries (key index, rank) with their versions, in parallel, into
    ``answers[i][rank] = (code, bytes or None, version)``; ``dest_of(i, rank)``: the pieces to read into (None: a
    buffer of its own). ``hits_only``: an answer is replaced only by a hit."""
    def one(n, entries):
        got = {}

        def run(store):
            versions = [0] * len(entries)
            codes, values = store._get([keys[i] for i, _ in entries], [dest_of(i, rank) for i, rank in entries], versions)
            got["values"], got["versions"] = values, versions
            return codes
        codes = router._run(slots[n], len(entries), run)
        values = got.get("values") or [None] * len(entries)
        versions = got.get("versions") or [0] * len(entries)
        for (i, rank), code, value, version in zip(entries, codes, values, versions):
            if not hits_only or (code >= 0 and value is not None):
                answers[i][rank] = (code, value, version)
    router._all(one, groups)


def get_newest(router, keys: list, dests: list) -> Tuple[list, list]:
    """The router's get with versions: see the module docstring. Returns (codes, values) like ``Router.get``."""
    _, slots, ranks = router._plan(keys, router.replicas)
    answers = [[None] * len(r) if r else [] for r in ranks]   # per key, per rank: (code, bytes or None, version)
    groups: Dict[int, List[Tuple[int, int]]] = {}
    for i, r in enumerate(ranks):
        for rank, n in enumerate(r or []):
            groups.setdefault(n, []).append((i, rank))

    _read_versions(router, slots, keys, groups, answers, lambda i, rank: dests[i] if rank == 0 else None)
    _reread_mismatches(router, slots, ranks, keys, answers)

    results = [E.INVALID_KEY] * len(keys)
    values = [None] * len(keys)
    repairs: Dict[int, list] = {}   # node index -> [(key index, winner rank)]
    retry = []
    for i, r in enumerate(ranks):
        if r is None:
            continue
        a = answers[i]
        winner = -1
        for rank, (code, _, version) in enumerate(a):
            if code >= 0 and (winner < 0 or version > a[winner][2]):
                winner = rank
        if winner < 0:
            codes = [x[0] for x in a]
            results[i] = E.UNAVAILABLE if not a else E.NOT_FOUND if E.NOT_FOUND in codes else codes[0]
            if any(c in _UNANSWERED for c in codes):
                retry.append(i)
            continue
        code, value, version = a[winner]
        router.clock.at_least(version)
        if value is None or dests[i] is None:   # read into the caller's pieces (rank 0), or into a buffer of its own
            results[i], values[i] = code, value
        else:   # a lower rank's copy, or one read again: into the caller's pieces
            results[i] = _deliver(dests[i], value)
        if version <= 0:
            continue   # a node that reports no versions: nothing to compare
        for rank, (c, _, v) in enumerate(a):
            if c == E.NOT_FOUND or (c >= 0 and 0 < v < version):
                repairs.setdefault(r[rank], []).append((i, winner))

    def repair(target, items):
        n, ttl = target
        pieces = [_source(dests[i], answers[i][w][1], answers[i][w][0]) for i, w in items]
        codes = router._run(slots[n], len(items), lambda s: s._put([keys[i] for i, _ in items], pieces, False, None, ttl=ttl,
                                                                     versions=[answers[i][w][2] for i, w in items]))
        with router._lock:
            router.read_repairs += sum(1 for c in codes if c == E.OK)
    if repairs:
        ttls = _winner_ttls(router, slots, keys, {(i, ranks[i][w]) for items in repairs.values() for i, w in items})
        by_target: Dict[Tuple[int, int], list] = {}
        for n, items in repairs.items():
            for i, w in items:
                if i in ttls:
                    by_target.setdefault((n, ttls[i]), []).append((i, w))
        router._all(repair, by_target)
    if retry:
        _, slots2, ranks2 = router._plan([keys[i] for i in retry], router.replicas)
        codes, vals = router._rounds(ranks2, slots2, lambda store, idx: store._get([keys[retry[j]] for j in idx], [dests[retry[j]] for j in idx]))
        for j, i in enumerate(retry):
            results[i], values[i] = codes[j], vals[j]
    return results, values
