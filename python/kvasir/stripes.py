"""One large TCP batch over several connections to its node (``KvStore(stripe_bytes=..., connections_per_node=...)``).

A GET or PUT request whose values (for a GET: whose destinations) total at least twice ``stripe_bytes`` is cut into
contiguous runs of its keys, about equal in bytes and no more runs than the total holds ``stripe_bytes`` (a run is whole
values: uneven values make uneven runs), one request per connection that is free at that moment, and the call returns
when every run has. One request in flight then moves its bytes over several TCP streams, several of the node's cores
and several reader threads here (a socket call releases the GIL). The .NET client does the same
(``src/Kvasir.Client/Internal/Stripes.cs``, ``KvStoreOptions.StripeBytes``); :func:`split` cuts exactly as it does.

Connections: the store's shared connection is one of ``connections_per_node``; the others are opened here only when a
striped batch needs them, and kept (each its own pipelined connection, with its own reader thread). A connection is
free when it is open with nothing outstanding, or not opened yet (or broken, to be replaced). A batch uses at most the
connections free when it starts (another thread's batch may pick the same one at the same moment: its request then
queues there, as any two requests on one connection do); with only one free it goes whole over that one (the shared
connection, as it always did, or an extra one while the shared one is busy with another thread's request). Every run but
the last is sent from a thread of the store's (:class:`_Workers`, kept between batches: starting a thread per run cost
~150 µs, handing a run to a waiting one ~17), the last from the caller's: sent one after another from the caller's
thread, each run's send would finish before the next began (the .NET client measured no gain that way).

Failures are per run: a run whose connection fails reports its own keys with the code the one-connection path reports
for a broken connection (``UNAVAILABLE``, ``TIMEOUT``, ``PROTOCOL_ERROR``) and that connection is dropped; the other runs
are unaffected. A run whose connection cannot be opened goes over the shared connection (a node at its connection limit
refuses the extra ones at HELLO), and after such a refusal no extra connection is opened for a while (:class:`OpenBackoff`). A connection reads only while a request is outstanding, so one the node closed while it
sat idle (the node stopped or restarted) looks open: such a connection is given no run (an extra one is replaced, the
shared one dropped for the store to reopen on its next call), so the first striped batch after a restart is stored.

A chained PUT is striped only where the node granted LATE_PARENT (HELLO bit 0x40): each run but the first continues the
last key of the run before it with PARENT_FOLLOWS, so the node links the runs into one chain whichever lands first
(docs/protocol.md, "PUT chains"); to any other node a chain goes whole, in order. Never striped (the caller decides;
:meth:`Stripes.run` is asked only for the others): a PUT that names a key twice (the last value must win), a GET into
values allocated on arrival (sizes unknown), and everything that travels through shared memory.
"""

import itertools
import os
import queue
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from . import errors as E
from .connection import _Connection, _Failure
from .errors import KvasirError, ProtocolError

__all__ = ["split", "default_stripe_bytes", "Stripes"]

DEFAULT_CONNECTIONS_PER_NODE = 4


def _cores() -> int:
    """Cores this process may run on (its affinity, as .NET's ``Environment.ProcessorCount``), else the host's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_stripe_bytes() -> int:
    """1 MiB on a host of 4 or more cores, else 0 (off): with 2 cores the runs' sends only take turns on the one core the
    socket copies leave (the .NET client ran 1 MiB x 16 at 0.7x striped on the project's 2-core machine)."""
    return 1 << 20 if _cores() >= 4 else 0


def validate(connections_per_node, stripe_bytes) -> None:
    """Raises :class:`KvasirError` naming the first bad option."""
    if isinstance(connections_per_node, bool) or not isinstance(connections_per_node, int) or connections_per_node < 1:
        raise KvasirError(f"connections_per_node must be an integer of at least 1 (got {connections_per_node!r})")
    if isinstance(stripe_bytes, bool) or not isinstance(stripe_bytes, int) or stripe_bytes < 0:
        raise KvasirError(f"stripe_bytes must be 0 (no striping) or a size in bytes (got {stripe_bytes!r})")


def split(lengths: Sequence[int], most: int, min_bytes: int) -> List[Tuple[int, int]]:
    """Cuts ``range(len(lengths))`` into at most ``most`` contiguous runs ``(start, end)``, and no more than the total holds
    ``min_bytes``, as equal in bytes as whole entries allow (uneven entries make uneven runs: a run may hold less than the
    minimum). One run (the whole range) when the bytes are under twice the minimum, when there is one entry or ``most``
    is 1, or when striping is off (``min_bytes`` <= 0). As the .NET client's ``Stripes.Split``."""
    count = len(lengths)
    total = sum(lengths) if min_bytes > 0 and most > 1 and count > 1 else 0
    n = 1 if min_bytes <= 0 else min(most, count, total // min_bytes)
    if n <= 1:
        return [(0, count)]
    # The k-th cut falls at the first entry whose end reaches k/n of the bytes; a run never ends empty.
    runs, done, start = [], 0, 0
    for i in range(count):
        if len(runs) >= n - 1:
            break
        done += lengths[i]
        left = count - (i + 1)            # entries after i, still to place
        runs_left = n - len(runs) - 1     # runs after this one
        if (done * n >= total * (len(runs) + 1) and left >= runs_left) or left == runs_left:
            runs.append((start, i + 1))
            start = i + 1
    runs.append((start, count))
    return runs


class OpenBackoff:
    """Holds a store back from opening extra connections to a node that refused one while the shared connection serves
    (a node at ``--max-connections`` or ``--max-connections-per-address`` closes each further connection at HELLO):
    without it every striped batch asked again, three refusals a batch. After a refusal nothing is opened for 1 s; when
    a wait has passed one caller probes (the others keep to the open connections until it has its answer), a refused
    probe doubling the wait up to 30 s; an opened connection ends it. As the .NET client's ``OpenBackoff``."""

    FIRST_WAIT = 1.0
    LONGEST_WAIT = 30.0

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0      # no opening before this; 0: no refusal since the last opening
        self._wait = 0.0
        self._probing = False

    @property
    def holding(self) -> bool:
        """Whether an opening would be held back now (no side effect)."""
        with self._lock:
            return self._until != 0.0 and (self._probing or self._clock() < self._until)

    def hold_back(self) -> Tuple[bool, bool]:
        """``(held, probe)``: skip opening now, or open, as the probe when a wait has just passed (the caller must then
        call :meth:`opened`, :meth:`refused` or :meth:`abandoned`)."""
        with self._lock:
            if self._until == 0.0:
                return False, False
            if self._probing or self._clock() < self._until:
                return True, False
            self._probing = True
            return False, True

    def opened(self) -> None:
        with self._lock:
            self._until, self._wait, self._probing = 0.0, 0.0, False

    def refused(self, probe: bool) -> None:
        """A refusal while the shared connection serves: the first wait, or, for a refused probe, one twice as long.
        Openings already under way when the wait began do not lengthen it."""
        with self._lock:
            now = self._clock()
            if not probe and self._until != 0.0 and now < self._until:
                return
            self._wait = self.FIRST_WAIT if self._wait == 0.0 else min(2 * self._wait, self.LONGEST_WAIT)
            self._until = now + self._wait
            if probe:
                self._probing = False

    def abandoned(self) -> None:
        """A probe ended without an answer: the next caller probes."""
        with self._lock:
            self._probing = False


def has_duplicate(keys: Sequence[bytes]) -> bool:
    """True when some key appears twice: such a PUT is not striped, so the last value still wins."""
    return len(set(keys)) < len(keys)


class _Worker:
    """One thread of :class:`_Workers`: runs the tasks put in its inbox; None ends it."""

    def __init__(self, pool: "_Workers"):
        self.inbox: "queue.SimpleQueue" = queue.SimpleQueue()
        threading.Thread(target=self._loop, args=(pool,), name="kvasir-stripe", daemon=True).start()

    def _loop(self, pool: "_Workers") -> None:
        while True:
            task = self.inbox.get()
            if task is None:
                return
            fn, done = task
            try:
                fn()
            except BaseException:
                done.set()
                raise   # the thread ends (threading.excepthook reports it), never listed as idle
            # Back among the idle before the caller learns the run ended, so its next batch finds this thread.
            kept = pool._rest(self)
            done.set()
            if not kept:
                return


class _Workers:
    """The threads that send a striped batch's runs, kept between batches: at most ``keep`` wait for the next batch's
    runs (a batch that finds none idle starts one, which ends after its run when ``keep`` already wait). Daemon threads,
    so a waiting one never holds up the interpreter's exit; :meth:`close` ends the waiting ones. A process forked from
    this one (its copy has none of these threads) starts its own."""

    def __init__(self, keep: int):
        self._keep = keep
        self._idle: List[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def start(self, fn: Callable[[], None]) -> threading.Event:
        """Runs ``fn()`` on a kept thread (or a new one); the event is set when it has returned or raised."""
        done = threading.Event()
        with self._lock:
            if self._pid != os.getpid():   # forked: the listed threads are the parent's
                self._idle, self._pid = [], os.getpid()
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
        worker.inbox.put((fn, done))
        return done

    def _rest(self, worker: _Worker) -> bool:
        """A worker whose task ended: True if it is kept, to wait for another."""
        with self._lock:
            if self._closed or len(self._idle) >= self._keep or self._pid != os.getpid():
                return False
            self._idle.append(worker)
            return True

    def close(self) -> None:
        """Ends the waiting threads; those still running a task end after it."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.inbox.put(None)


class Stripes:
    """The extra connections of one node's store and the striping of its large batches (see the module).

    ``open_connection()`` opens one more plain connection to the node (raising :class:`KvasirError` when it cannot);
    ``drop(conn)`` closes a failed connection (and, for the store's shared one, makes the store forget it)."""

    def __init__(self, open_connection: Callable[[], _Connection], drop: Callable[[_Connection], None],
                 connections_per_node: int, stripe_bytes: int):
        self.connections = connections_per_node
        self.stripe_bytes = stripe_bytes
        self._open = open_connection
        self._drop = drop
        self._extra: List[Optional[_Connection]] = [None] * (connections_per_node - 1)
        self._locks = [threading.Lock() for _ in self._extra]   # one per slot: held while it is (re)opened, and by close
        self._next = itertools.count()
        self._closed = False
        self._backoff = OpenBackoff()
        # At most one run a connection is sent from these threads at once (the last run of a batch from the caller's).
        self._workers = _Workers(keep=connections_per_node)

    def may_stripe(self, keys: int) -> bool:
        """Whether a request of ``keys`` keys could be striped at all (before its bytes are counted)."""
        return self.stripe_bytes > 0 and self.connections > 1 and keys > 1

    def worth(self, keys: int, total_bytes: int) -> bool:
        """Whether a request of ``keys`` keys carrying ``total_bytes`` may be striped (asked before anything else)."""
        return self.may_stripe(keys) and total_bytes >= 2 * self.stripe_bytes

    def opened(self) -> int:
        """Extra connections open now (the store's shared one not counted)."""
        return sum(1 for c in self._extra if c is not None and not c.broken)

    def run(self, first: _Connection, idx: list, lengths: Sequence[int], send, fail) -> bool:
        """Sends the keys ``idx`` (``lengths[j]``: the bytes of ``idx[j]``) as runs over the free connections, ``first``
        (the store's shared connection) among them when it is idle: ``send(conn, part)`` sends the keys ``part`` on
        ``conn`` and writes their results; ``fail(part, code, reason)`` marks a failed run's keys. Returns when every run
        has ended, True; False, having sent nothing, when fewer than two runs come of it or no connection but ``first``
        is free (the caller then sends ``idx`` whole on ``first``, as an unstriped request)."""
        runs = split(lengths, self.connections, self.stripe_bytes)
        if len(runs) < 2:
            return False
        slots = self._free_slots(first, len(runs))
        if not slots or slots == [-1]:
            return False
        if len(slots) < len(runs):   # one free connection beside the busy shared one: the batch goes whole over it
            runs = split(lengths, len(slots), self.stripe_bytes)
        used: List[_Connection] = []   # the runs' connections, to cut if the caller is interrupted
        errors: List[BaseException] = []
        waits = []
        try:
            for (start, end), slot in zip(runs[:-1], slots):
                part = idx[start:end]
                waits.append(self._workers.start(
                    lambda slot=slot, part=part: self._one(first, slot, part, send, fail, used, errors)))
            start, end = runs[-1]
            self._one(first, slots[len(runs) - 1], idx[start:end], send, fail, used, errors)
            for done in waits:
                done.wait()
        except BaseException:
            # Interrupted while runs are in flight: cut their connections so no byte lands in the caller's memory later.
            for conn in list(used):
                self._drop(conn)
            raise
        if errors:
            raise errors[0]
        return True

    def _free_slots(self, first: _Connection, most: int) -> list:
        """Up to ``most`` slots a striped request may use, one run each: -1 for ``first`` when it is idle (and open), then
        extra slots whose connection is open and idle, or not opened yet (or broken or closed by the node, to be
        replaced)."""
        slots = []
        if first.outstanding == 0:
            if not first.peer_closed():
                slots.append(-1)
            elif not first.broken:
                # Closed by the node while idle (it stopped or restarted): its run would fail. The store forgets it and
                # its next call opens a new one; this batch goes over the extra connections.
                self._drop(first)
        n = len(self._extra)
        if n == 0:
            return slots
        may_open = not self._backoff.holding   # a node that refused a connection lately: only the open ones count
        offset = next(self._next) % n   # spread concurrent batches over the slots
        for k in range(n):
            if len(slots) >= most:
                break
            slot = (offset + k) % n
            c = self._extra[slot]
            if (may_open if c is None or c.broken else c.outstanding == 0):
                slots.append(slot)
        return slots

    def _one(self, first, slot, part, send, fail, used, errors) -> None:
        """One run: ``part`` sent on its slot's connection (``first`` when the slot cannot be opened)."""
        reason = None
        if slot < 0:
            conn = first
        else:
            try:
                conn = self._slot_connection(slot, first)
            except KvasirError as ex:
                conn, reason = None, str(ex)
            if conn is None and not first.broken:
                conn = first
        if conn is None:
            fail(part, E.UNAVAILABLE, reason or "the store is closed")
            return
        used.append(conn)
        try:
            send(conn, part)
        except (_Failure, ProtocolError) as ex:
            self._drop(conn)
            fail(part, ex.code if isinstance(ex, _Failure) else E.PROTOCOL_ERROR, str(ex))
        except BaseException as ex:   # noqa: BLE001 - handed to the caller's thread, which raises it
            self._drop(conn)   # interrupted mid-frame: the stream is out of step
            errors.append(ex)

    def _slot_connection(self, slot: int, first: _Connection) -> Optional[_Connection]:
        """The extra connection of ``slot``, opened (or replaced when broken or closed by the node) if need be; None once
        the store is closed, or while the node's refusal holds openings back (:class:`OpenBackoff`: the run then goes
        over ``first``). Raises :class:`KvasirError` when the node cannot be reached."""
        c = self._extra[slot]
        if c is not None and not c.peer_closed():
            return c
        serving = not first.broken
        held, probe = self._backoff.hold_back() if serving else (False, False)
        if held:
            return None
        answered = False
        try:
            with self._locks[slot]:
                c = self._extra[slot]
                if c is not None and not c.peer_closed():   # one the node closed while idle is replaced, not used
                    return c
                # Checked under the slot's lock, which close() also takes: no connection opened here outlives the store.
                if self._closed:
                    return None
                if c is not None:
                    c.close()
                self._extra[slot] = None
                try:
                    c = self._open()
                except KvasirError:
                    if not first.broken:   # refused while the shared connection serves: most likely the node's limit
                        self._backoff.refused(probe)
                        answered = True
                    raise
                self._extra[slot] = c
                self._backoff.opened()
                answered = True
                return c
        finally:
            if probe and not answered:
                self._backoff.abandoned()

    def close(self) -> None:
        """Closes every extra connection; later runs find none (their keys go over the shared connection, or fail)."""
        self._closed = True
        self._workers.close()
        for slot, lock in enumerate(self._locks):
            with lock:
                c, self._extra[slot] = self._extra[slot], None
            if c is not None:
                c.close()
