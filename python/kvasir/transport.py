"""The byte transport beneath a connection: a TCP socket (optionally TLS) with gathered sends and receives
straight into the caller's memory. Shared memory (kvasir.shm) carries values beside it, never frames.

A :class:`SocketTransport` may be written by one thread while another reads it (plain TCP only: an SSL
object must not be read and written at once, so a TLS connection runs one request at a time)."""

import ctypes
import socket
from typing import Optional

from . import errors as E
from .errors import KvasirError

_IOV_MAX = 512  # iovecs per sendmsg call (Linux allows 1024)
_TLS_COALESCE = 16 * 1024  # over TLS, pieces up to this size are joined into one write (one record, one syscall)
_DRAIN_CHUNK = 1 << 20


class _Failure(Exception):
    """Internal: the request in progress failed with per-key ``code``; the connection is gone."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def _view(ptr: int, size: int) -> memoryview:
    """A writable byte memoryview over ``size`` bytes at address ``ptr`` (no copy)."""
    if size == 0:
        return memoryview(bytearray())
    return memoryview((ctypes.c_char * size).from_address(ptr)).cast("B")


class SocketTransport:
    """A connected TCP socket (wrapped in TLS when ``tls`` is given), with timeouts as the connection's."""

    def __init__(self, host: str, port: int, connect_timeout: float, tls=None):
        self.tls = tls
        self._scratch = None
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except socket.timeout:
            raise KvasirError(f"cannot connect to {host}:{port}: timed out after {connect_timeout:g} s") from None
        except OSError as ex:
            raise KvasirError(f"cannot connect to {host}:{port}: {ex.strerror or ex}") from None
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(connect_timeout)
            if tls is not None:
                self.sock = tls.wrap(self.sock, host, f"{host}:{port}")
        except BaseException:
            self.close()
            raise

    def settimeout(self, seconds: Optional[float]) -> None:
        self.sock.settimeout(seconds)

    def close(self) -> None:
        """Closes the socket; a thread blocked reading it wakes (shutdown first: close alone does not wake it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def failure(self, ex: BaseException, what: str) -> _Failure:
        if isinstance(ex, socket.timeout):
            return _Failure(E.TIMEOUT, f"{what}: no progress within {self.sock.gettimeout():g} s")
        return _Failure(E.UNAVAILABLE, f"{what}: {ex}")

    def send(self, buffers: list, progress=None) -> None:
        """Writes every buffer in order (gathered with sendmsg, looping on partial sends); ``progress()`` after each write."""
        bufs = [b if isinstance(b, memoryview) else memoryview(b) for b in buffers if len(b)]
        if self.tls is not None:
            self._send_tls(bufs)
            return
        i = 0
        try:
            while i < len(bufs):
                sent = self.sock.sendmsg(bufs[i:i + _IOV_MAX])
                if progress is not None:
                    progress()
                while sent:
                    n = len(bufs[i])
                    if sent >= n:
                        sent -= n
                        i += 1
                    else:
                        bufs[i] = bufs[i][sent:]
                        sent = 0
        except OSError as ex:
            raise self.failure(ex, "send failed") from None

    def _send_tls(self, bufs: list) -> None:
        """An SSL socket has no sendmsg: small pieces are joined (one TLS record), large ones written as they are."""
        pending = bytearray()
        try:
            for b in bufs:
                if len(b) <= _TLS_COALESCE:
                    pending += b
                    if len(pending) < _TLS_COALESCE:
                        continue
                    b = b""
                if pending:
                    self.sock.sendall(pending)
                    pending = bytearray()
                if len(b):
                    self.sock.sendall(b)
            if pending:
                self.sock.sendall(pending)
        except OSError as ex:
            raise self.failure(ex, "send failed") from None

    def recv_into(self, mv: memoryview) -> None:
        off, n = 0, len(mv)
        try:
            while off < n:
                got = self.sock.recv_into(mv[off:], n - off)
                if got == 0:
                    raise _Failure(E.UNAVAILABLE, "the node closed the connection")
                off += got
        except OSError as ex:
            raise self.failure(ex, "receive failed") from None

    def drain(self, n: int) -> None:
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_DRAIN_CHUNK))
        while n > 0:
            k = min(n, _DRAIN_CHUNK)
            self.recv_into(self._scratch[:k])
            n -= k
