"""Per-layer pull for prefill -> decode (docs/transfer.md § Per-layer pull): the prefill engine announces each
layer group of a request as soon as its KV is computed, and the decode engine reads that group out of the prefill's
advertised buffer at once, so the decoder's first layers can run while the prefill still computes the last ones.

Nothing new on the wire: an announcement is a NOTIFY whose bytes are a 24-byte *layer-ready note*:

    offset size field
         0    4 magic "KVXL"
         4    1 version 1
         5    3 reserved 0
         8    8 tag (u64 >= 1): the application's name for the request, the same on both sides
        16    4 group (u32): the index of the layer group that is ready
        20    4 reserved 0

A note for which the decoder has a pull (same connection, same tag) starts that group's read and is not listed by
``get_notifs``; any other note is an ordinary notification, and a pull opened later takes the notes of its tag that
arrived before it."""

import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from .regions import TransferError

MAGIC = b"KVXL"
NOTE_BYTES = 24
_NOTE = struct.Struct("<4sB3xQI4x")


def encode_note(tag: int, group: int) -> bytes:
    if not 1 <= tag < 1 << 64:
        raise TransferError(f"a layer tag is 1..2^64-1, not {tag}")
    if not 0 <= group < 1 << 32:
        raise TransferError(f"a layer group index is 0..2^32-1, not {group}")
    return _NOTE.pack(MAGIC, 1, tag, group)


def decode_note(note: bytes):
    """(tag, group) of a layer-ready note, or None when ``note`` is an ordinary notification."""
    if len(note) != NOTE_BYTES or note[:4] != MAGIC:
        return None
    magic, version, tag, group = _NOTE.unpack(note)
    if version != 1 or tag == 0 or note[5:8] != b"\0\0\0" or note[20:24] != b"\0\0\0\0":
        return None
    return tag, group


class LayerPull:
    """The decoder's side of one request: one read per layer group, each started when its note arrives.

    ``wait(group, timeout)`` -> True once that group's bytes are in local memory; ``wait_all(timeout)``;
    ``landed()`` -> the groups in local memory so far; ``error`` -> the reason the pull failed (a group's read failed,
    the connection closed, a note named a group past the list), or None. ``close()`` forgets the pull (notes that
    arrive after go to ``get_notifs``)."""

    def __init__(self, conn_id: int, tag: int, groups: Sequence[tuple], start: Callable[[tuple], object],
                 cond: threading.Condition, forget: Callable[["LayerPull"], None]):
        self.conn_id = conn_id
        self.tag = tag
        self._groups = list(groups)
        self._start = start        # group's (mr_id, ptr, size, meta, remote_offset) -> a started Transfer
        self._cond = cond          # the engine's lock: notified on every notification and closed connection
        self._forget = forget
        self._reads: Dict[int, object] = {}
        self.error: Optional[str] = None

    def __len__(self) -> int:
        return len(self._groups)

    def announce(self, group: int) -> None:
        """A layer-ready note arrived (a lane's reader thread): starts that group's read, once."""
        with self._cond:
            if self.error is not None or group in self._reads:
                return
            if group >= len(self._groups):
                self._fail(f"the producer announced layer group {group} of tag {self.tag}, "
                           f"but the pull has {len(self._groups)} groups")
                return
            self._reads[group] = None   # claimed: a second note for it does nothing
        try:
            t = self._start(self._groups[group])
        except TransferError as e:
            with self._cond:
                self._fail(f"layer group {group}: {e}")
            return
        with self._cond:
            self._reads[group] = t
            self._cond.notify_all()

    def connection_closed(self, reason: str) -> None:
        with self._cond:
            if len(self._reads) < len(self._groups):
                self._fail(reason)

    def _fail(self, reason: str) -> None:   # under the lock
        if self.error is None:
            self.error = f"layer pull of tag {self.tag} on connection {self.conn_id}: {reason}"
        self._cond.notify_all()

    def wait(self, group: int, timeout: Optional[float] = None) -> bool:
        """True once ``group`` landed; False on timeout (the pull goes on) or when the pull failed (``error``)."""
        if not 0 <= group < len(self._groups):
            raise TransferError(f"layer group {group} is outside the pull's 0..{len(self._groups) - 1}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._reads.get(group) is None and self.error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            t = self._reads.get(group)
            if t is None:
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not t.done.wait(left if left is not None else max(0.0, t.deadline - time.monotonic())):
            t.expire_if_late()
            if not t.done.is_set():
                return False
        if t.failed:
            with self._cond:
                self._fail(t.error)
            return False
        return True

    def wait_all(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for g in range(len(self._groups)):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.wait(g, left):
                return False
        return True

    def landed(self) -> List[int]:
        with self._cond:
            reads = dict(self._reads)
        return sorted(g for g, t in reads.items() if t is not None and t.done.is_set() and not t.failed)

    def close(self) -> None:
        self._forget(self)

    def __enter__(self) -> "LayerPull":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
