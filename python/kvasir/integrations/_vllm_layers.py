"""Values per group of layers, and the asynchronous loads and saves behind KvasirConnector's per-layer hooks.

Layout (``kvasir_layout``)
--------------------------
``block`` (the default, and the only layout before): one value per block of a kv-cache group holding every layer's
slices, under the block's key. ``layerN`` (``layer`` = ``layer1``): one value per block and group of N consecutive
layers of a kv-cache group (positions in the group's registration order, i.e. the model's layer order), under the
block's key plus ``/L{first}-{last}`` (``/L{i}`` for one layer): the names and bytes bench/ttft.py measures.
A layer group's values can be read, and waited for, alone, so the forward pass can start on layer 0 while later
groups are still coming: ``wait_for_layer_load`` waits only for the group that holds its layer. With ``block``
the first layer of a kv-cache group waits for every layer of it (the protocol has no ranged read). The layouts
are separate key spaces: a store written in one is a miss in the other; ``block`` stays the default so that stores
written by earlier versions keep hitting.

Asynchrony
----------
``start_load_kv`` only queues: over shared memory (the node on this host) every layer group's copies are submitted
at once (``batch_get_into_multi_buffers_submit_local``, copies run on the store's copy threads / CUDA stream); over
the socket one I/O thread (:class:`IoThread`) runs the groups' reads in layer order while the forward pass computes.
The forward thread is the only one touching device tensors: a staged (CUDA, socket) group is read into host memory on
the I/O thread and copied into the kv caches by the wait. Saves of host tensors are queued per layer group as soon as
``save_kv_layer`` has seen the group's last layer; ``wait_for_save`` queues the rest and waits for all of them.
Nothing outlives its forward pass: ``wait_for_save`` and ``get_block_ids_with_load_errors`` finish every load of the
step (so its failed block ids are reported in the pass that loaded them, as upstream's contract asks for loads vLLM
sees as synchronous), and ``shutdown`` stops the I/O thread.
"""

import logging
import queue
import re
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from ..errors import UNAVAILABLE

logger = logging.getLogger("kvasir.vllm")


def layers_per_value(setting) -> int:
    """``kvasir_layout`` as a number of layers per value: 0 for ``block`` (every layer of a kv-cache group)."""
    text = str(setting or "block").strip().lower()
    if text == "block":
        return 0
    m = re.fullmatch(r"layer(\d*)", text)
    if not m or (m.group(1) and int(m.group(1)) < 1):
        raise ValueError(f"kvasir: kvasir_layout {setting!r}: use block (default: one value per block), layer (one "
                         "value per block and layer) or layerN (one per block and group of N layers, N >= 1)")
    return int(m.group(1) or 1)


def suffixes(n_layers: int, per: int) -> List[str]:
    """The key suffixes of a kv-cache group of ``n_layers`` layers, ``per`` layers a value (0: one value, no suffix)."""
    if per <= 0:
        return [""]
    return [f"/L{a}" if min(a + per, n_layers) - 1 == a else f"/L{a}-{min(a + per, n_layers) - 1}"
            for a in range(0, n_layers, per)]


@dataclass(frozen=True)
class Unit:
    """One value of every block of a kv-cache group: the layers it holds and its key suffix."""
    group: int
    names: tuple
    suffix: str


def units_of(names_per_group: Sequence[Sequence[str]], per: int) -> List[Unit]:
    """The values of a block, in layer order within each kv-cache group, groups in order."""
    out = []
    for g, names in enumerate(names_per_group):
        names = list(names)
        if not names:
            continue
        step = per if per > 0 else len(names)
        out += [Unit(g, tuple(names[a:a + step]), s) for a, s in zip(range(0, len(names), step),
                                                                   suffixes(len(names), per))]
    return out


class Job:
    """Work handed to the :class:`IoThread`: ``wait`` gives its value (or raises its exception)."""

    def __init__(self, fn: Callable):
        self._fn = fn
        self._done = threading.Event()
        self._value = None
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as ex:  # noqa: BLE001 - handed to the waiter
            self._error = ex
        finally:
            self._done.set()

    def wait(self, timeout: float):
        if not self._done.wait(timeout):
            raise TimeoutError(f"the connector's I/O thread did not finish a transfer within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value


class IoThread:
    """One daemon thread running the worker's socket transfers in the order they were queued (loads of a step in
    layer order, then its saves). Started on the first job; ``close`` ends it."""

    def __init__(self, name: str = "kvasir-vllm-io"):
        self._name = name
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable) -> Job:
        job = Job(fn)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.run()

    def close(self, timeout: float) -> bool:
        """Ends the thread after the queued jobs; False when it did not end within ``timeout`` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return True
            self._queue.put(None)
        thread.join(timeout)
        return not thread.is_alive()


class UnitLoad:
    """One layer group's reads of this step: ``rows`` index the step's load plan, ``pending`` is a LocalLoad (shared
    memory) or a :class:`Job` (socket); ``after`` (staging) copies what arrived into the kv caches, in the waiting
    thread, and gives the lengths. ``finish`` waits once and keeps the lengths per row (``UNAVAILABLE`` for every row when it failed)."""

    def __init__(self, unit: Unit, rows: List[int], pending, local: bool, after: Optional[Callable] = None):
        self.unit, self.rows, self.local = unit, rows, local
        self._pending, self._after = pending, after
        self.results: Optional[List[int]] = None

    def finish(self, timeout: float) -> List[int]:
        if self.results is None:
            try:
                value = self._pending.wait(timeout)
                results = list(self._after(value) if self._after is not None else value)
            except Exception as ex:  # noqa: BLE001 - a failed load is reported as failed blocks, never raised
                logger.warning("kvasir: loading layers %s..%s failed: %s", self.unit.names[0], self.unit.names[-1], ex)
                results = [UNAVAILABLE] * len(self.rows)
            self.results = results
        return self.results


class Done:
    """An already finished transfer (a synchronous fallback), with :class:`Job`'s ``wait``."""

    def __init__(self, value):
        self._value = value

    def wait(self, timeout: float):  # noqa: ARG002 - same signature as Job.wait
        return self._value
