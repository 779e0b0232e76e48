"""Where an engine listens, and how the target assembles sessions (docs/transfer.md § Lanes and
sessions): every accepted socket runs its handshake on its own thread; lanes that joined wait, by
session id, until all ``lane_count`` are in, then the session is handed over. A session not complete
within the handshake timeout is dropped with its lanes."""

import fcntl
import ipaddress
import os
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from . import _handshake, _wire

_SIOCGIFADDR = 0x8915


def resolve_interface(if_name: str) -> str:
    """An IP literal as is, or the IPv4 address of the named interface (e.g. "lo" -> 127.0.0.1)."""
    try:
        return str(ipaddress.ip_address(if_name))
    except ValueError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", if_name.encode()[:15]))
        except OSError as e:
            raise ValueError(f"interface {if_name!r} has no IPv4 address ({e.strerror}); "
                             "pass an interface name such as 'lo' or an IP address") from None
    return socket.inet_ntoa(packed[20:24])


def read_host_id() -> bytes:
    """The boot id of this machine (docs/transfer.md § Same host), or 16 random bytes if unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            host = bytes.fromhex(f.read().strip().replace("-", ""))
        if len(host) == 16:
            return host
    except (OSError, ValueError):
        pass
    return os.urandom(16)


class _Pair:
    """Sessions being assembled on the target, by session id."""

    def __init__(self, hello: _wire.HelloRequest):
        self.lane_count = hello.lane_count
        self.engine_id = hello.engine_id
        self.host_id = hello.host_id
        self.lanes: Dict[int, Optional[Tuple[socket.socket, tuple]]] = {}   # None: its handshake is still running
        self.started = time.monotonic()


class Listener:
    """Accepts lanes on ``(ip, port)``; calls ``on_session(sockets, addr of lane 0, peer engine_id,
    peer host_id)`` from a handshake thread once a session has all its lanes."""

    def __init__(self, ip: str, port: int, engine_id: bytes, max_slice: int, key: Optional[bytes],
                 handshake_timeout: float, on_session: Callable[[List[socket.socket], tuple, bytes, bytes], None]):
        self.engine_id = engine_id
        self.slice_bytes = max_slice
        self._key = key
        self.handshake_timeout = handshake_timeout
        self._on_session = on_session
        self._lock = threading.RLock()   # _fits runs both inside and outside it
        self._pairs: Dict[bytes, _Pair] = {}
        self._closed = False
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((ip, port))
        except OSError as e:
            self._listener.close()
            raise ValueError(f"cannot listen on {ip}:{port}: {e.strerror}") from None
        self._listener.listen(128)
        self._listener.settimeout(0.25)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name=f"xfer-accept-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._pairs = list(self._pairs.values()), {}
        self._thread.join(5.0)
        self._listener.close()
        for p in pairs:
            for lane in p.lanes.values():
                if lane is not None:
                    lane[0].close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                self._drop_stale_pairs()
                continue
            except OSError:
                return
            threading.Thread(target=self._join_lane, args=(sock, addr), name=f"xfer-hello-{self.port}",
                             daemon=True).start()

    def _drop_stale_pairs(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [sid for sid, p in self._pairs.items() if now - p.started > self.handshake_timeout]
            dropped = [self._pairs.pop(sid) for sid in stale]
        for p in dropped:
            for lane in p.lanes.values():
                if lane is not None:
                    lane[0].close()

    def _fits(self, hello: _wire.HelloRequest) -> Optional[str]:
        if not 1 <= hello.lane_count <= _wire.MAX_LANES:
            return f"lane_count {hello.lane_count} is outside 1..{_wire.MAX_LANES}"
        if hello.lane_index >= hello.lane_count:
            return f"lane_index {hello.lane_index} is not below lane_count {hello.lane_count}"
        with self._lock:
            p = self._pairs.get(hello.session_id)
        if p is None:
            return None
        if p.lane_count != hello.lane_count:
            return f"lane_count {hello.lane_count} differs from the session's {p.lane_count}"
        if hello.lane_index in p.lanes:
            return f"lane {hello.lane_index} of the session already joined"
        return None

    def _claim(self, hello: _wire.HelloRequest) -> Optional[str]:
        """``_fits`` and, when the lane fits, its place in the session taken at once (a placeholder until the
        handshake ends): the check and the claim are one step under the lock, before the HELLO reply is sent, so
        a second lane with the same index racing the first is answered BAD_SESSION rather than accepted and then
        dropped without a word."""
        with self._lock:
            why = self._fits(hello) or ("the engine is closing" if self._closed else None)
            if why is None:
                self._pairs.setdefault(hello.session_id, _Pair(hello)).lanes[hello.lane_index] = None
            return why

    def _unclaim(self, hello: _wire.HelloRequest) -> None:
        with self._lock:
            p = self._pairs.get(hello.session_id)
            if p is not None and p.lanes.get(hello.lane_index, False) is None:
                del p.lanes[hello.lane_index]
                if not p.lanes:
                    del self._pairs[hello.session_id]

    def _join_lane(self, sock: socket.socket, addr) -> None:
        sock.settimeout(self.handshake_timeout)
        claimed = []

        def claim(hello):
            why = self._claim(hello)
            if why is None:
                claimed.append(hello)
            return why
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = _handshake.server(sock, self.engine_id, self.slice_bytes, self._key, claim)
        except (_handshake.HandshakeError, OSError, ConnectionError):
            for h in claimed:   # the lane fitted but its handshake failed after (AUTH): its place is free again
                self._unclaim(h)
            sock.close()
            return
        sock.settimeout(None)
        with self._lock:
            p = self._pairs.get(hello.session_id)
            if p is None or self._closed or p.lanes.get(hello.lane_index, False) is not None:   # dropped as stale, or closing
                sock.close()
                return
            p.lanes[hello.lane_index] = (sock, addr)
            if len(p.lanes) < p.lane_count or any(v is None for v in p.lanes.values()):
                return
            del self._pairs[hello.session_id]
        self._on_session([p.lanes[i][0] for i in range(p.lane_count)], p.lanes[0][1], p.engine_id, p.host_id)
