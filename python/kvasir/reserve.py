"""How much arena space one connection may hold reserved (ALLOC'd, not yet committed) at once.

A node lets one connection hold at most ``--max-reserved-per-connection`` bytes of uncommitted reservations (a
quarter of the arena unless its operator set otherwise; docs/protocol.md § Ownership and timeouts); an ALLOC past
that share answers OUT_OF_MEMORY for the key. The node does not say its share, so a connection's
:class:`ReservationBudget` starts at the default (a quarter of the arena) and learns a smaller one from such an
answer: every ALLOC of this client takes its bytes from the budget first (threads that share the connection wait
their turn instead of being refused), and a key refused while other reservations of this connection were held is
asked for again once they are committed (:func:`refused_for_share`). A key refused while nothing else was held is
a real OUT_OF_MEMORY (the arena is full of pinned or leased values) and is reported as one.

A refusal because the arena itself was full (pinned or leased values, other clients' reservations) looks the same as
one for the share, so what a budget learnt is forgotten :data:`FORGET_AFTER` seconds later: a real share is learnt
again at the cost of one refused piece, while a moment of full arena no longer cuts every later put of the connection
into pieces of what it took then (as the .NET client's ReservationBudget).
"""

import threading
import time
from typing import Optional

from . import protocol as P

# Seconds a learnt share holds before the budget is back at its start.
FORGET_AFTER = 10.0


class ReservationBudget:
    """The bytes this client lets one connection hold reserved; safe to share between threads. ``clock``: monotonic
    seconds (default ``time.monotonic``; a test moves it on instead of sleeping past :data:`FORGET_AFTER`)."""

    def __init__(self, limit: int, clock=time.monotonic):
        self.clock = clock
        self._initial = self._limit = max(1, int(limit))
        self._learnt_at = 0.0
        self.used = 0
        self._cv = threading.Condition()

    @property
    def limit(self) -> int:
        """The bytes the connection may hold reserved: what was learnt, or the start once that is FORGET_AFTER old."""
        with self._cv:
            return self._current()

    def _current(self) -> int:
        """:attr:`limit`; called holding the condition's lock."""
        if self._limit < self._initial and self.clock() - self._learnt_at >= FORGET_AFTER:
            self._limit = self._initial
        return self._limit

    def acquire(self, n: int, wait: bool = True, broken=lambda: False, force: bool = False) -> Optional[int]:
        """Takes ``n`` bytes; returns the bytes other requests of this connection held then (None: no room and
        ``wait`` False). A request larger than the whole budget goes alone. ``broken()`` ends a wait (0 returned:
        the request then fails on the connection itself). ``force``: takes them even past the budget (what is held
        waits for this request; the node's answer says whether its share has room)."""
        with self._cv:
            while self.used and self.used + n > self._current() and not force:
                if not wait:
                    return None
                if broken():
                    break
                self._cv.wait(0.5)
            others = self.used
            self.used += n
            return others

    def release(self, n: int) -> None:
        if n:
            with self._cv:
                self.used -= n
                self._cv.notify_all()

    def learn(self, accepted: int) -> None:
        """The node refused a key after ``accepted`` bytes of this connection were reserved: its share is smaller."""
        with self._cv:
            self._limit = max(1, min(self._current(), int(accepted)))
            self._learnt_at = self.clock()


_made = threading.Lock()


def budget_of(conn, mapping) -> ReservationBudget:
    """The connection's budget, made on first use with the node's default share (a quarter of the arena); one per
    connection even when two threads start putting on a fresh connection at once."""
    b = getattr(conn, "reservations", None)
    if b is None:
        with _made:
            b = getattr(conn, "reservations", None)
            if b is None:
                b = conn.reservations = ReservationBudget(mapping.length // 4)
    return b


def refused_for_share_array(statuses, lengths, others: int):
    """:func:`refused_for_share` over numpy arrays of an ALLOC reply's statuses and the keys' lengths: a boolean mask of
    the keys to ask for again, and the bytes the budget learns (None when no key is to be asked for again)."""
    import numpy as np
    ok = statuses == P.WireStatus.OK
    held = others + np.concatenate(([0], np.cumsum(np.where(ok, lengths, 0))[:-1]))   # before each key
    again = (statuses == P.WireStatus.OUT_OF_MEMORY) & (held > 0)
    first = np.flatnonzero(again)
    return again, (int(held[first[0]]) if len(first) else None)


def refused_for_share(statuses, lengths, others: int):
    """Positions of an ALLOC reply's OUT_OF_MEMORY keys that may have been refused for the connection's share (this
    connection held ``others`` bytes when it was sent, plus what the reply granted before each key), and the bytes
    the node had accepted before the first of them (what the budget learns); ([], None) when none."""
    held, retry, accepted = others, [], None
    for pos, (st, n) in enumerate(zip(statuses, lengths)):
        if st == P.WireStatus.OK:
            held += int(n)
        elif st == P.WireStatus.OUT_OF_MEMORY and held > 0:
            if accepted is None:
                accepted = held
            retry.append(pos)
    return retry, accepted
