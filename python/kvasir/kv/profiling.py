"""AccessStatsCollector and the access statistics file, schema v1 (docs/engine-side.md "Access statistics file").

The same file is written by Python, .NET and a node (``kvasir stats export``), read by all of them and drawn
by ``kvasir stats visualize``. ``summarize(accesses)`` is the one summary computation; readers recompute it
from "accesses" rather than trusting the stored one.

Reuse distance of an access: the number of distinct blocks accessed since the previous access of the same
block (LRU stack distance); first accesses have none. Computed in O(log n) per access with a Fenwick tree
over the positions of each block's latest access.
"""
import json
import math
import threading
import time
from collections import Counter, deque
from typing import Any, Dict, Iterable, List, Optional

from .errors import MetadataMismatchError

__all__ = ["AccessStatsCollector", "summarize", "read_stats", "write_stats", "SCHEMA", "VERSION", "TIERS"]

SCHEMA = "kvasir-access-stats"
VERSION = 1
TIERS = ("engine", "dram", "disk", "shared")


def _percentile(sorted_values: List[int], p: int) -> Optional[float]:
    """Nearest rank: the value at rank ceil(p/100 * n), 1-based; None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, (p * n + 99) // 100)
    return float(sorted_values[rank - 1])


def reuse_distances(blocks: Iterable[str]) -> List[int]:
    """The reuse distance of every access that has one, in access order."""
    blocks = list(blocks)
    n = len(blocks)
    tree = [0] * (n + 1)

    def add(i, v):
        i += 1
        while i <= n:
            tree[i] += v
            i += i & -i

    def prefix(i):   # sum over positions [0, i)
        s = 0
        while i > 0:
            s += tree[i]
            i -= i & -i
        return s

    last: Dict[str, int] = {}
    out = []
    for pos, b in enumerate(blocks):
        prev = last.get(b)
        if prev is not None:
            out.append(prefix(pos) - prefix(prev + 1))   # latest accesses of other blocks after prev
            add(prev, -1)
        add(pos, 1)
        last[b] = pos
    return out


def summarize(accesses: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The schema-v1 summary of ``accesses`` (dicts with "block", "hit", "tier"), in the order given."""
    total = len(accesses)
    hits = sum(1 for a in accesses if a["hit"])
    counts = Counter(a["block"] for a in accesses)
    dist = sorted(reuse_distances(a["block"] for a in accesses))
    by_tier: Dict[str, int] = {}
    for a in accesses:
        if a["hit"] and a.get("tier") is not None:
            by_tier[a["tier"]] = by_tier.get(a["tier"], 0) + 1
    hottest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return {
        "total_accesses": total, "hits": hits, "misses": total - hits,
        "hit_rate": hits / total if total else 0.0,
        "unique_blocks": len(counts),
        "reuse_distance": {"count": len(dist), "p50": _percentile(dist, 50), "p90": _percentile(dist, 90),
                           "p99": _percentile(dist, 99)},
        "hottest": [{"block": b, "accesses": c} for b, c in hottest],
        "hits_by_tier": {t: by_tier[t] for t in sorted(by_tier, key=lambda t: (TIERS.index(t) if t in TIERS else 99, t))},
    }


def read_stats(path: str) -> Dict[str, Any]:
    """Reads a stats file; unknown fields are kept and ignored. Raises MetadataMismatchError for another
    schema or a version above 1, ValueError for a file that is not a JSON object."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not an access statistics file (a JSON object expected)")
    if doc.get("schema") != SCHEMA:
        raise MetadataMismatchError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA!r}",
                                    {"path": path, "schema": doc.get("schema")})
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise MetadataMismatchError(f"{path}: version {version!r}; this reader knows version {VERSION}",
                                    {"path": path, "version": version})
    doc.setdefault("accesses", [])
    return doc


def write_stats(path: str, accesses: List[Dict[str, Any]], start_unix_ms: int, end_unix_ms: int,
                source: str = "python", dropped: int = 0) -> Dict[str, Any]:
    doc = {"schema": SCHEMA, "version": VERSION, "source": source, "start_unix_ms": int(start_unix_ms),
           "end_unix_ms": int(end_unix_ms), "dropped": int(dropped), "accesses": accesses,
           "summary": summarize(accesses)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    return doc


class AccessStatsCollector:
    """``AccessStatsCollector(max_events=1_000_000, source="python")``: records block accesses.

    ``record_access(block_id, is_hit, t=None, tier=None, bytes=None, tokens=None)``: ``t`` in ms since the
    collector's start (default: now); ``tier`` one of engine, dram, disk, shared or None. Keeps the newest
    ``max_events`` accesses and counts the others as ``dropped``. Thread-safe.
    ``export_stats(path)`` writes schema v1 (accesses in time order) and returns the document;
    ``get_stats_summary()`` returns the summary of the kept accesses.
    """

    def __init__(self, max_events: int = 1_000_000, source: str = "python"):
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.max_events = max_events
        self.source = source
        self.start_unix_ms = int(time.time() * 1000)
        self._t0 = time.monotonic()
        self._events: deque = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.dropped = 0

    def record_access(self, block_id, is_hit: bool, t: Optional[float] = None, tier: Optional[str] = None,
                      bytes: Optional[int] = None, tokens: Optional[int] = None) -> None:
        if tier is not None and tier not in TIERS:
            raise ValueError(f"tier {tier!r} is not one of {', '.join(TIERS)} or None")
        if t is None:
            t = (time.monotonic() - self._t0) * 1000.0
        event = {"t": float(t), "block": str(block_id), "hit": bool(is_hit), "tier": tier,
                 "bytes": None if bytes is None else int(bytes), "tokens": None if tokens is None else int(tokens)}
        with self._lock:
            if len(self._events) == self.max_events:
                self.dropped += 1
            self._events.append(event)

    @property
    def total_recorded(self) -> int:
        """Accesses recorded so far, kept or dropped."""
        with self._lock:
            return len(self._events) + self.dropped

    def accesses(self) -> List[Dict[str, Any]]:
        with self._lock:
            events = list(self._events)
        events.sort(key=lambda e: e["t"])   # stable: equal times keep recording order
        return events

    def get_stats_summary(self) -> Dict[str, Any]:
        return summarize(self.accesses())

    def export_stats(self, path: str) -> Dict[str, Any]:
        events = self.accesses()
        # the end covers the last access, also when callers pass synthetic times beyond the present
        end = max(self.start_unix_ms + int(math.ceil(events[-1]["t"] if events else 0.0)), int(time.time() * 1000))
        return write_stats(path, events, self.start_unix_ms, end, self.source, self.dropped)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self.dropped = 0
