"""Lanes (docs/transfer.md § Lanes and sessions): one TCP connection each, with a reader thread and a
writer thread. The reader never waits for the writer: every frame to send (requests and the replies
the reader produces) goes through the lane's writer queue, so two engines sending large slices to
each other on one lane cannot deadlock on full socket buffers.

Replies to our requests on a lane come back in request order: each lane keeps a FIFO of the requests
it sent (appended under the same lock that queues the frame, so FIFO order is send order)."""

import collections
import socket
import threading
from typing import Callable, Deque, List, Optional, Tuple

from . import _wire
from ._staging import Staging
from .regions import DeviceRange, TransferError

_SCRATCH = 64 * 1024


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    """Fills ``view`` from the socket straight into its memory (no staging copy). MSG_WAITALL lets the kernel fill a
    whole slice in one call, so the thread takes the interpreter lock once per slice rather than once per segment the
    kernel had ready (a 1 MiB slice otherwise comes in 10-60 pieces, each a GIL hand-off between the lanes' threads).
    The loop stays for what MSG_WAITALL may still return short (a signal, a socket with a timeout)."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:] if got else view, n - got, socket.MSG_WAITALL)
        if k == 0:
            raise ConnectionError("peer closed the connection")
        got += k


def send_frame(sock: socket.socket, head: bytes, payload: Optional[memoryview]) -> None:
    """Sends a frame's head and payload with one sendmsg (two buffers, one system call and one GIL release per slice);
    whatever a short send left goes out with sendall."""
    if payload is None or not payload.nbytes:
        sock.sendall(head)
        return
    sent = sock.sendmsg([head, payload])   # payload views are byte views (regions.raw_view)
    if sent < len(head):
        sock.sendall(memoryview(head)[sent:])
        sent = len(head)
    if sent - len(head) < payload.nbytes:
        sock.sendall(payload[sent - len(head):])


def drain(sock: socket.socket, n: int) -> None:
    """Reads and drops ``n`` bytes through a small scratch buffer (a refused slice keeps the lane in step)."""
    scratch = memoryview(bytearray(min(n, _SCRATCH) or 1))
    while n > 0:
        k = sock.recv_into(scratch, min(n, len(scratch)))
        if k == 0:
            raise ConnectionError("peer closed the connection")
        n -= k


def read_frame(sock: socket.socket, max_payload: int) -> Tuple[_wire.Header, bytes]:
    """Reads a header and its metadata; the payload (if any) is left on the socket for the caller."""
    head = bytearray(_wire.HEADER_BYTES)
    recv_exact(sock, memoryview(head))
    h = _wire.decode_header(head, max_payload)
    meta = bytearray(h.meta_length)
    if h.meta_length:
        recv_exact(sock, memoryview(meta))
    return h, bytes(meta)


class Pending:
    """A request this side sent on a lane and whose reply it awaits."""

    def __init__(self, opcode: int, request_id: int):
        self.opcode = opcode
        self.request_id = request_id

    def on_reply(self, lane: "Lane", header: _wire.Header, meta: bytes) -> None:
        """Consumes the reply (and its payload, if any, from ``lane``). Raising closes the lane."""
        raise NotImplementedError

    def on_fail(self, reason: str) -> None:
        raise NotImplementedError


# (bytes before the payload, payload view, DeviceRange or None, called once the frame left or was dropped)
_Item = Tuple[bytes, object, Optional[Callable[[], None]]]


class Lane:
    def __init__(self, sock: socket.socket, index: int, max_payload: int,
                 on_request: Callable[["Lane", _wire.Header, bytes], None],
                 on_lost: Callable[["Lane", str], None], name: str, label: str):
        self.sock = sock
        self.index = index
        self.max_payload = max_payload
        self._on_request = on_request
        self._on_lost = on_lost
        self._name = name
        self._label = label
        self._lock = threading.Condition()
        self._queue: Deque[_Item] = collections.deque()
        self._pending: Deque[Pending] = collections.deque()
        self._closed: Optional[str] = None
        self._threads: List[threading.Thread] = []
        self._staging: Optional[Staging] = None   # made when a slice first moves to or from GPU memory

    def start(self) -> None:
        # Both threads exist before either starts: a reader that ends at once (the peer closed) joins the writer.
        self._threads = [threading.Thread(target=target, name=f"{self._name}-lane{self.index}-{role}", daemon=True)
                         for target, role in ((self._read_loop, "reader"), (self._write_loop, "writer"))]
        for t in self._threads:
            t.start()

    # ---- sending --------------------------------------------------------------------------------
    def request(self, op: Pending, head: bytes, payload=None) -> None:
        """Queues a request frame; its reply goes to ``op``. Fails ``op`` at once if the lane is closed."""
        with self._lock:
            if self._closed is None:
                self._pending.append(op)
                self._queue.append((head, payload, None))
                self._lock.notify()
                return
            reason = self._closed
        op.on_fail(reason)

    def reply(self, head: bytes, payload=None, release: Optional[Callable[[], None]] = None) -> None:
        """Queues a reply behind the replies still waiting for their slice's copy to GPU memory (request order)."""
        staging = self._staging
        if staging is not None and staging.after(lambda _error: self.send_reply(head, payload, release)):
            return
        self.send_reply(head, payload, release)

    def send_reply(self, head: bytes, payload=None, release: Optional[Callable[[], None]] = None) -> None:
        """Queues a reply at once (the GPU completer's call: every earlier reply of the lane is already queued).
        ``payload`` may be a DeviceRange: the writer copies it from GPU memory just before sending."""
        with self._lock:
            if self._closed is None:
                self._queue.append((head, payload, release))
                self._lock.notify()
                return
        if release:
            release()

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and self._closed is None:
                    self._lock.wait()
                if self._closed is not None:
                    return
                head, payload, release = self._queue.popleft()
            try:
                if isinstance(payload, DeviceRange):
                    payload = self.gpu.stage_send(payload)
                send_frame(self.sock, head, payload)
            except OSError as e:
                self.close(f"send failed: {e}")
                return
            except TransferError as e:
                self.close(str(e))
                return
            finally:
                if release:
                    release()

    # ---- receiving ------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while True:
                header, meta = read_frame(self.sock, self.max_payload)
                if header.is_reply:
                    if _wire.is_frame_level(header.status):   # the peer is closing the lane
                        raise ConnectionError(f"peer answered {_wire.status_name(header.status)}")
                    with self._lock:
                        op = self._pending.popleft() if self._pending else None
                    if op is None or op.request_id != header.request_id or op.opcode != header.opcode:
                        raise _wire.FrameError(_wire.BAD_FRAME, f"unexpected {_wire.OPCODE_NAMES.get(header.opcode, header.opcode)} "
                                                                f"reply to request {header.request_id}")
                    op.on_reply(self, header, meta)
                else:
                    self._on_request(self, header, meta)
        except _wire.FrameError as e:
            self._send_fatal(e.status)
            self.close(f"{_wire.status_name(e.status)}: {e}")
        except (OSError, ConnectionError) as e:
            self.close(str(e) or type(e).__name__)
        except Exception as e:  # a bug in a handler must close the lane (its transfers fail), never hang them
            self.close(f"internal error on the lane: {e!r}")
        finally:
            # The reader owns the socket's end: it closes it once the writer has stopped.
            for t in self._threads:
                if t is not threading.current_thread() and t.ident is not None:   # started
                    t.join(5.0)
            self.sock.close()

    def _send_fatal(self, status: int) -> None:
        """Best effort: a frame-level error reply goes out before the lane closes."""
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(_wire.encode_header(_wire.WRITE, 0, 0, reply=True, status=status))
        except OSError:
            pass

    def recv_into(self, view: memoryview) -> None:
        recv_exact(self.sock, view)

    @property
    def gpu(self) -> Staging:
        with self._lock:
            if self._staging is None:
                self._staging = Staging(f"{self._name}-lane{self.index}", self.close)
            return self._staging

    def recv_to_device(self, dest: DeviceRange, then: Callable[[Optional[str]], None]) -> None:
        """Receives a payload of ``len(dest)`` bytes into GPU memory through the lane's pinned ring; ``then(None)``
        runs once the bytes are there (``then(reason)`` when the copy failed), on the lane's GPU completer."""
        self.gpu.receive(self.recv_into, dest, then)

    def drain(self, n: int) -> None:
        drain(self.sock, n)

    # ---- closing --------------------------------------------------------------------------------
    @property
    def closed(self) -> Optional[str]:
        return self._closed

    def close(self, reason: str) -> None:
        """Closes the lane; its pending requests fail with "<label> closed (lane i: reason)"."""
        if not reason.startswith(self._label):
            reason = f"{self._label} closed (lane {self.index}: {reason})"
        with self._lock:
            if self._closed is not None:
                return
            self._closed = reason
            pending, self._pending = list(self._pending), collections.deque()
            queued, self._queue = list(self._queue), collections.deque()
            self._lock.notify_all()
            staging = self._staging
        # The session learns this reason before the socket goes down: otherwise the peer, seeing the shutdown, may close
        # its other lanes first, and the session would report that consequence instead of the cause.
        self._on_lost(self, reason)
        if staging is not None:
            staging.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for _, _, release in queued:
            if release:
                release()
        for op in pending:
            op.on_fail(reason)
