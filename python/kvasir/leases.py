"""How many shared-memory leases one connection has in flight (LEASE sent, RELEASE not yet sent).

A node closes a connection whose LEASE would take it past ``--max-leases-per-connection`` (65,536 by default;
docs/protocol.md § Ownership and timeouts), and every request on it fails. Threads share the store's connection, and an
async local load holds its leases until its caller waits for it, so the client keeps at most :func:`in_flight` leases
per connection (twice the node's ``max_batch_keys``, at most 32,768, as the .NET client), counted per key.

Two kinds of holders: a GET's request (:func:`kvasir.shm.lease_chunk`) holds its keys from LEASE to RELEASE and always
ends; an async local load holds them until it is waited for, perhaps by the very thread that now asks for more. So a
request waits while GETs hold part of the room, and room held by loads alone is made free by settling the oldest of
them (:meth:`kvasir.local_load.LocalLoad.settle`: its copies were submitted already, so waiting for them needs nobody
else; their leases are then released, and the load's own ``wait()`` later finds them done).
"""

import threading

# The most leases a connection keeps in flight, whatever the node's batch limit: half the node's default bound.
MOST_IN_FLIGHT = 32_768


def in_flight(max_batch_keys: int) -> int:
    """Leases a connection keeps in flight at once: two requests of the node's largest batch, at most 32,768. A node
    whose ``--max-leases-per-connection`` is below this can still close a connection of big batches."""
    return max(1, min(2 * int(max_batch_keys), MOST_IN_FLIGHT))


class LeaseSlots:
    """The leases one connection has in flight, in keys; safe to share between threads."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self.gets = 0       # held by GET requests (each ends by itself)
        self.loads = 0      # held by async local loads (until they are waited for or settled)
        self._holders = {}  # load -> slots it holds, oldest first
        self._cv = threading.Condition()

    def take(self, n: int, load=None, broken=lambda: False) -> None:
        """Takes ``n`` slots for a GET request or for a chunk of the async load ``load``: waits while GETs hold the room,
        and settles the oldest loads while they alone hold it. A request larger than the whole bound goes alone.
        ``broken()`` ends a wait (the slots are taken: the request then fails on the connection itself)."""
        while True:
            with self._cv:
                total = self.gets + self.loads
                if not total or total + n <= self.limit or broken():
                    if load is None:
                        self.gets += n
                    else:
                        self.loads += n
                        self._holders[load] = self._holders.get(load, 0) + n
                    return
                if self.gets:
                    self._cv.wait(0.5)
                    continue
                oldest = next(iter(self._holders))
            if not oldest.settle():   # outside the lock: its RELEASEs give slots back here
                with self._cv:        # another thread's load between taking slots and starting its copies
                    self._cv.wait(0.05)

    def give(self, n: int, load=None) -> None:
        """Gives back ``n`` slots of a GET request or of ``load`` once the RELEASE of their leases was sent (or their
        connection closed)."""
        if n:
            with self._cv:
                if load is None:
                    self.gets -= n
                else:
                    self.loads -= n
                    left = self._holders.get(load, 0) - n
                    if left > 0:
                        self._holders[load] = left
                    else:
                        self._holders.pop(load, None)
                self._cv.notify_all()


_made = threading.Lock()


def slots_of(conn) -> LeaseSlots:
    """The connection's lease slots, made on first use from its node's ``max_batch_keys``; one per connection even when
    two threads start reading on a fresh connection at once."""
    s = getattr(conn, "lease_slots", None)
    if s is None:
        with _made:
            s = getattr(conn, "lease_slots", None)
            if s is None:
                s = conn.lease_slots = LeaseSlots(in_flight(conn.hello.max_batch_keys))
    return s
