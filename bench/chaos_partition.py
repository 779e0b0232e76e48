"""bench/chaos.py's partition mode (issue 16): every --partition-every seconds one node's link is cut for
--partition-for seconds (bench/netns.py: its namespace's veth pair drops every packet, both ways) while the load
runs, then restored. Redis and the client stay in the root namespace, so the cut node can neither serve the client
nor heartbeat Redis: its registration expires (--heartbeat-ttl, 5 s) and it leaves the client's view; after the
heal it registers again and the client uses it again.

Timed for each partition (seconds from the cut, or from the heal):

* ``stalled``: the longest single client operation while cut (a request waiting on the silent node: the client's
  request timeout, then one more try on a new connection);
* ``around``: the first successful operation (a PUT acknowledged, a read that hit) on a key the cut node holds a
  replica of: its keys were served by the other replica (the client runs one operation at a time, so this
  includes the first stall);
* ``left``: the client's view dropped the node (its registration expired in Redis);
* ``rejoined``: after the heal, the node is registered and in the client's view again;
* ``served``: after the heal, the first request the node answered for the client.
"""
import threading
import time

from kvasir import errors as E
from kvasir.placement import Ring


class Partitions:
    """Runs the partitions from its own thread (every 50 ms), so cuts, heals and the client's view are timed while
    the load's single client waits on a stalled request; the load reports each operation with :meth:`op`."""

    def __init__(self, links, store, node_ids, every: float, length: float, recovery_limit: float, rng, start: float,
                 deadline: float, log=None):
        self.links, self.store = links, store
        self.ids = list(node_ids)
        self.ring = Ring(self.ids)   # the placement with every node in the view
        self.every, self.length, self.limit = every, length, recovery_limit
        self.rng, self.t0 = rng, start
        self.log = log or (lambda line: print(line, flush=True))
        self.next_at = start + every
        self.deadline = deadline     # the load's end: a partition starts only if it heals before
        self.active = None           # the partition under way, until its node serves again after the heal
        self.done = []
        self.problems = []
        self.answered = {}           # node id -> last time it answered a request (neither UNAVAILABLE nor TIMEOUT)
        self.ending = False          # the load is over: no new partition
        self.paused = False          # a kill or a Redis restart under way: no new partition
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-partitions", daemon=True)
        router = store._router
        run = router._run

        def timed_run(slot, count, call, force=False):
            codes = run(slot, count, call, force)
            if count and not all(c in (E.UNAVAILABLE, E.TIMEOUT) for c in codes):
                self.answered[slot.id] = time.monotonic()
            return codes
        router._run = timed_run

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                with self._lock:
                    self.tick(time.monotonic())
            except Exception as ex:  # noqa: BLE001 - reported as a failure of the round, never a silent stop
                self.problems.append(f"the partition thread failed: {type(ex).__name__}: {ex}")
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def busy(self) -> bool:
        """A partition is under way (cut, or healed but its node not serving yet)."""
        with self._lock:
            return self.active is not None

    def pause(self) -> bool:
        """For another fault (one at a time): True, and no partition starts until :meth:`resume`; False while one is
        under way."""
        with self._lock:
            if self.active is not None:
                return False
            self.paused = True
            return True

    def resume(self) -> None:
        with self._lock:
            self.paused = False

    def _t(self, at: float) -> float:
        return round(at - self.t0, 2)

    def tick(self, now: float) -> None:
        p = self.active
        if p is None:
            if now >= self.next_at and now + self.length < self.deadline and not self.ending and not self.paused:
                victim = self.rng.randrange(len(self.ids))
                self.links.partition(victim)
                self.active = p = {"node": victim, "cut": time.monotonic(), "stalled": 0.0, "around": None, "left": None,
                                   "healed": None, "rejoined": None, "served": None, "ops": 0, "ok": 0, "slow": []}
                self.log(f"chaos: t={self._t(p['cut']):7.2f} s partition node {victim} ({self.links.addrs[victim]}) for {self.length:.0f} s")
            return
        node_id = self.ids[p["node"]]
        in_view = any(n["id"] == node_id for n in self.store.nodes)
        if p["healed"] is None:
            if p["left"] is None and not in_view:
                p["left"] = now - p["cut"]
            if now >= p["cut"] + self.length:
                self.links.heal(p["node"])
                p["healed"] = time.monotonic()
                self.log(f"chaos: t={self._t(p['healed']):7.2f} s heal node {p['node']}")
            return
        if p["rejoined"] is None and in_view:   # the client's view is the registry's membership
            p["rejoined"] = now - p["healed"]
        if p["served"] is None and self.answered.get(node_id, 0) > p["healed"]:
            p["served"] = self.answered[node_id] - p["healed"]
        if p["rejoined"] is not None and p["served"] is not None:
            self._finish(p, now)
        elif now - p["healed"] > self.limit:
            self.problems.append(f"node {p['node']} was not {'registered and seen' if p['rejoined'] is None else 'asked'} "
                                 f"again within {self.limit:.0f} s of the partition's heal")
            self._finish(p, now)

    def _finish(self, p, now):
        self.done.append(p)
        self.active = None
        self.next_at = now + self.every
        self.log(f"chaos: partition of node {p['node']}: {p['ops']} operations while cut ({p['ok']} succeeded), longest "
                 f"{p['stalled']:.2f} s; its keys served by the other replica {fmt(p['around'])} after the cut; left the view "
                 f"{fmt(p['left'])} after the cut; after the heal registered and seen {fmt(p['rejoined'])}, served {fmt(p['served'])}"
                 f"{'; slow: ' + '; '.join(p['slow']) if p['slow'] else ''}")

    def op(self, key: bytes, ok: bool, began: float, ended: float, what: str = "") -> None:
        """One client operation (``what``: put or get) of ``key`` that began and ended at these times; ``ok``:
        acknowledged or hit. Operations over 1 s while cut are listed (the first 5) with the key's replicas."""
        with self._lock:
            p = self.active
            if p is None or ended < p["cut"] or (p["healed"] is not None and began > p["healed"]):
                return
            p["ops"] += 1
            p["ok"] += ok
            p["stalled"] = max(p["stalled"], ended - max(began, p["cut"]))
            if ended - began > 1.0 and len(p["slow"]) < 5:
                p["slow"].append(f"{what} {key.decode(errors='replace')} on {'+'.join(self.ring.place(key, 2))} at "
                                 f"t={self._t(began)} s took {ended - began:.2f} s")
            if ok and p["around"] is None and self.ids[p["node"]] in self.ring.place(key, 2):
                p["around"] = ended - p["cut"]

    def end(self) -> None:
        """The load is over: no new partition; a cut link is restored now, so the final check reads every node (the
        thread goes on timing the node's return until :meth:`stop`)."""
        with self._lock:
            self.ending = True
            if self.active is not None and self.active["healed"] is None:
                self.links.heal(self.active["node"])
                self.active["healed"] = time.monotonic()

    def summary(self) -> str:
        if not self.done:
            return "chaos: partitions: none completed"

        def stat(name):
            xs = sorted(p[name] for p in self.done if p[name] is not None)
            return f"median {xs[len(xs) // 2]:.2f} s, max {xs[-1]:.2f} s" if xs else "never"
        return (f"chaos: {len(self.done)} partitions of {self.length:.0f} s: longest operation while cut {stat('stalled')}; "
                f"keys of the cut node served by the other replica after {stat('around')}; node left the client's view after "
                f"{stat('left')}; after the heal, registered and seen again after {stat('rejoined')}, served again after "
                f"{stat('served')} ({sum(p['served'] is not None for p in self.done)} of {len(self.done)} served again)")


def fmt(x) -> str:
    return "never" if x is None else f"{x:.2f} s"
