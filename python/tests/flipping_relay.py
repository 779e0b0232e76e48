"""A TCP relay between a client and a node that, once armed, flips one payload byte of the next GET reply long enough
to hold it: the corruption a faulty NIC, a kernel bug or a stray write into a receive buffer would cause, with the
frame's lengths intact. Requests and every other reply pass unchanged; replies are parsed from their 32-byte headers.
The same idea as the .NET tests' FlippingRelay (tests/Kvasir.Client.Tests/FlippingRelay.cs)."""

import socket
import threading

from kvasir import protocol as P

_CHUNK = 256 * 1024


class FlippingRelay:
    """``FlippingRelay("host:port")``: listens on 127.0.0.1 (``address``); each client connection gets its own
    connection to the node. ``arm(offset)``: the next GET reply with more than ``offset`` payload bytes gets that byte
    xor-ed with 0x5A (-1 disarms); ``flips``: GET replies corrupted so far. ``cut_put_on``: the relay's N-th client
    connection (1 = the first accepted) is cut, both sides, when a PUT request arrives on it, before the node sees any
    of that PUT (as the .NET FrameRelay's cutConnection); ``put_cuts`` counts those cuts. ``close()`` stops every
    thread it started."""

    def __init__(self, node_address: str, cut_put_on: int = 0):
        host, port = node_address.rsplit(":", 1)
        self._node = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._flip_at = -1
        self.flips = 0
        self._cut_put_on = cut_put_on
        self._accepted = 0
        self.put_cuts = 0
        self._cut = None   # (payload offset, "cut" or "stall") for the next GET reply long enough, from arm_cut/arm_stall
        self._stop = threading.Event()
        self._sockets = []
        self._threads = [threading.Thread(target=self._accept, name="flipping-relay accept", daemon=True)]
        self._threads[0].start()

    def arm(self, payload_offset: int) -> None:
        with self._lock:
            self._flip_at = payload_offset

    def arm_cut(self, payload_offset: int, skip: int = 0) -> None:
        """The next GET reply with more than ``payload_offset`` payload bytes, after ``skip`` such replies passed whole,
        is forwarded up to that byte, then both sides of its connection are closed (a node lost mid-value)."""
        with self._lock:
            self._cut = [payload_offset, "cut", skip]

    def arm_stall(self, payload_offset: int, skip: int = 0) -> None:
        """As :meth:`arm_cut`, but nothing more of that reply is forwarded (a node stalled mid-value) until the relay
        closes."""
        with self._lock:
            self._cut = [payload_offset, "stall", skip]

    def _take_cut(self, payload_length: int):
        with self._lock:
            if self._cut is None or self._cut[0] >= payload_length:
                return None
            if self._cut[2] > 0:
                self._cut[2] -= 1
                return None
            cut, self._cut = self._cut, None
            return cut

    def _take(self, payload_length: int) -> int:
        """The offset to flip in a GET reply of ``payload_length`` payload bytes (disarming), or -1."""
        with self._lock:
            at = self._flip_at
            if at < 0 or at >= payload_length:
                return -1
            self._flip_at = -1
            self.flips += 1
            return at

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            node = socket.create_connection(self._node, timeout=10)
            node.settimeout(None)
            client.settimeout(None)
            for s in (client, node):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, node]
                self._accepted += 1
                requests = self._requests if self._accepted == self._cut_put_on else self._copy
            for target, args in ((requests, (client, node)), (self._replies, (node, client))):
                t = threading.Thread(target=target, args=args, name="flipping-relay pump", daemon=True)
                self._threads.append(t)
                t.start()

    def _copy(self, src, dst) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)

    def _requests(self, src, dst) -> None:
        """Forwards requests frame by frame until a PUT's header arrives: then closes both sides (``cut_put_on``)."""
        header = bytearray(P.HEADER_SIZE)
        buf = bytearray(_CHUNK)
        try:
            while _read_exact(src, memoryview(header)):
                h = P.unpack_header(header)
                if h.opcode == P.Opcode.PUT:
                    with self._lock:
                        self.put_cuts += 1
                    _shut(src)
                    return
                dst.sendall(header)
                left = h.meta_length + h.payload_length
                while left > 0:
                    chunk = memoryview(buf)[:min(_CHUNK, left)]
                    if not _read_exact(src, chunk):
                        return
                    dst.sendall(chunk)
                    left -= len(chunk)
        except OSError:
            pass
        finally:
            _shut(dst)

    def _replies(self, src, dst) -> None:
        header = bytearray(P.HEADER_SIZE)
        buf = bytearray(_CHUNK)
        try:
            while _read_exact(src, memoryview(header)):
                h = P.unpack_header(header)
                dst.sendall(header)
                flip = self._take(h.payload_length) if h.opcode == P.Opcode.GET and h.is_reply else -1
                cut = self._take_cut(h.payload_length) if h.opcode == P.Opcode.GET and h.is_reply else None
                left, position = h.meta_length + h.payload_length, -h.meta_length   # position: offset in the payload
                while left > 0:
                    if cut is not None and position == cut[0]:
                        if cut[1] == "stall":
                            self._stop.wait()
                        return   # the finally closes the client's side; the node's side goes with the relay
                    chunk = memoryview(buf)[:min(_CHUNK, left, cut[0] - position if cut is not None and position < cut[0] else _CHUNK)]
                    if not _read_exact(src, chunk):
                        return
                    if 0 <= flip and position <= flip < position + len(chunk):
                        chunk[flip - position] ^= 0x5A
                    dst.sendall(chunk)
                    position += len(chunk)
                    left -= len(chunk)
        except OSError:
            pass
        finally:
            _shut(dst)

    def close(self) -> None:
        self._stop.set()
        self._threads[0].join(timeout=10)   # the accept loop first: no connection is added after this
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            _shut(s)
        for t in self._threads:
            t.join(timeout=10)
            assert not t.is_alive(), f"{t.name} did not stop"
        for s in sockets:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_exact(s, into: memoryview) -> bool:
    done = 0
    while done < len(into):
        n = s.recv_into(into[done:])
        if n == 0:
            return False
        done += n
    return True


def _shut(s) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
