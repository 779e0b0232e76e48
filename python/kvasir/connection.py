"""A connection to one node: HELLO/AUTH, then many requests in flight at once (pipelined).

Any number of threads may share one :class:`_Connection`. A request is written whole under a short send lock,
carrying its request id, and its waiter is registered before its first byte goes out. One reader thread
receives every reply, matches it to its waiter by request id and opcode, and reads the reply's payload
straight into the memory the waiter named (``on_reply``), so GET values land in the caller's buffers with no
staging copy. A socket error, a timeout or a reply out of step fails every waiter of the connection with
one clear error, and the connection is then unusable (the store opens a new one on its next call).

Over TLS an SSL object must not be read and written by two threads at once, so a TLS connection runs one
request at a time instead: the caller writes its request and reads its own reply, holding the connection's
lane from the first byte sent to the last byte received.

Ordering: requests are written in the order their senders took the send lock, and a node serves a
connection's requests in that order. A caller that needs one request served before another (a chained put's
chunks, ALLOC then COMMIT, LEASE then RELEASE) waits for the first one's reply before sending the next.
"""

import itertools
import select
import threading
import time
from typing import Optional, Sequence

from . import errors as E
from . import protocol as P
from .errors import KvasirAuthError, KvasirError, ProtocolError
from .transport import SocketTransport, _Failure, _view  # noqa: F401 - _Failure and _view are re-exported

CLIENT_NAME = "kvasir-py/0.1"
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)   # Linux: the peer closed its side (elsewhere only POLLHUP is seen)

_WIRE_TO_CODE = {
    P.WireStatus.OK: E.OK,
    P.WireStatus.NOT_FOUND: E.NOT_FOUND,
    P.WireStatus.VALUE_TOO_LARGE: E.VALUE_TOO_LARGE,
    P.WireStatus.INVALID_KEY: E.INVALID_KEY,
    P.WireStatus.OUT_OF_MEMORY: E.OUT_OF_MEMORY,
    P.WireStatus.TIER_FAILED: E.TIER_FAILED,
    P.WireStatus.QUOTA_EXCEEDED: E.QUOTA_EXCEEDED,
}


def _code(wire: int) -> int:
    return _WIRE_TO_CODE.get(wire, E.PROTOCOL_ERROR)


# --- keys ------------------------------------------------------------------------------------------

def _keys_bytes(keys) -> list:
    """:func:`_key_bytes` of each key (str keys encoded at C speed)."""
    return [k.encode("utf-8") if type(k) is str else _key_bytes(k) for k in keys]


def _key_bytes(key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")



# --- connection ------------------------------------------------------------------------------------

class _Waiter:
    """One request awaiting its reply. ``on_reply(header, meta)`` (run by whichever thread reads the reply)
    consumes the reply's payload; without it a payload is drained. ``discard``: nobody waits (RELEASE)."""

    __slots__ = ("opcode", "decode", "on_reply", "discard", "done", "header", "msg", "error")

    def __init__(self, opcode: int, decode: bool, on_reply, discard: bool):
        self.opcode, self.decode, self.on_reply, self.discard = opcode, decode, on_reply, discard
        self.done = threading.Event()
        self.header = self.msg = self.error = None


class _Connection:
    """One connection to a node after HELLO (and AUTH); safe to share between threads (see the module)."""

    def __init__(self, host: str, port: int, auth_key: Optional[bytes], connect_timeout: float, request_timeout: float,
                 tls=None):
        self.request_timeout = request_timeout
        self.where = f"{host}:{port}"
        self.versions = False   # the node granted value versions (HELLO bit 0x4): PUT may carry VERSION, GET replies carry versions
        self.arena_features = False   # the node granted ARENA_PROOF (0x8): ALLOC may carry MAPPED (and TTL with 0x2), COMMIT COMMIT_CRC
        self.late_parent = False   # the node granted LATE_PARENT (0x40): a PUT may carry PARENT_FOLLOWS (striped chains)
        self.arena_proof = None   # this connection's proof that it reads the arena (set when shared memory is negotiated on it)
        self._ids = itertools.count(1)
        self._header = bytearray(P.HEADER_SIZE)
        self._send_lock = threading.Lock()
        self._state = threading.Condition(threading.Lock())   # guards _waiters and _broken; notified when a waiter is added
        self._waiters = {}        # request id -> _Waiter, in the order sent
        self._broken: Optional[_Failure] = None
        self._reading = None      # (thread, waiter) while that thread receives the waiter's payload into its memory
        self._sent_at = time.monotonic()   # the last time a send made progress (the reader's timeout counts from it too)
        self._reader = None       # the reader thread (plain TCP after the handshake); None: each caller reads its own reply
        # TLS: one request at a time, held from its first byte sent to its reply's last byte read (see the module)
        self._lane = threading.Lock() if tls is not None else None
        self._tls = tls
        self.transport = SocketTransport(host, port, connect_timeout, tls)
        try:
            self.hello = self._handshake(host, port, auth_key)
            self.versions = bool(self.hello.features & P.FEATURE_VERSIONS)
            self.arena_features = bool(self.hello.features & P.FEATURE_ARENA_PROOF)
            self.late_parent = bool(self.hello.features & P.FEATURE_LATE_PARENT)
            self.transport.settimeout(request_timeout)
        except BaseException:
            self.transport.close()
            raise
        if tls is None:
            self._reader = threading.Thread(target=self._read_loop, name=f"kvasir-reader {self.where}", daemon=True)
            self._reader.start()

    @property
    def sock(self):
        return self.transport.sock

    @property
    def broken(self) -> bool:
        """The connection has failed (or been closed): every later request fails at once."""
        return self._broken is not None

    def peer_closed(self) -> bool:
        """True when the connection is broken, or the node has closed its side (or the socket failed) without this
        connection noticing: its reader reads only while a request is outstanding, so an idle connection to a node that
        stopped (or restarted) looks open until its next request fails. Checked without reading (POLLRDHUP)."""
        if self._broken is not None:
            return True
        try:
            poller = select.poll()   # one per call: a poll object must not be polled by two threads at once
            poller.register(self.transport.sock, _POLLRDHUP)
            events = poller.poll(0)
        except (OSError, ValueError):   # a socket already closed
            return True
        return any(ev & (_POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events)

    @property
    def outstanding(self) -> int:
        """Requests sent (or being sent) on this connection whose replies have not been read yet: 0 when it is idle."""
        return len(self._waiters)

    @property
    def pipelined(self) -> bool:
        """Requests of several threads may be in flight at once (False over TLS: one at a time)."""
        return self._reader is not None

    def close(self) -> None:
        self._fail(_Failure(E.UNAVAILABLE, "the connection was closed"))

    def _handshake(self, host, port, auth_key) -> P.HelloReply:
        where = f"{host}:{port}"
        try:
            # VALUE_CRC, TTL, versions, the arena proof and late parents are asked for always: granted, a PUT may carry the
            # writer's CRCs (KvStore(value_crc=True)), a time to live (put(..., ttl=)), versions and PARENT_FOLLOWS (a
            # striped chain's runs), and a shared-memory ALLOC skips the node's zeroing; requests without them are unchanged
            hello = self.call(P.Opcode.HELLO, P.encode_meta(P.HelloRequest(
                features=P.FEATURE_VALUE_CRC | P.FEATURE_TTL | P.FEATURE_VERSIONS | P.FEATURE_ARENA_PROOF
                | P.FEATURE_COMMIT_CHAIN | P.FEATURE_LATE_PARENT, client_name=CLIENT_NAME)))
            if not isinstance(hello, P.HelloReply) or hello.version != P.VERSION:
                raise KvasirError(f"{where} negotiated an unsupported protocol version")
            self.features = hello.features & P.FEATURE_VALUE_CRC   # a bit not asked for is never used
            if hello.auth_required and auth_key is None:
                raise KvasirAuthError(f"{where} requires an auth key and none is configured")
            if not hello.auth_required and auth_key is not None:
                raise KvasirAuthError(f"an auth key is configured but {where} does not authenticate; "
                                      "refusing an unauthenticated node")
            if auth_key is not None:
                nonce = P.new_nonce()
                proof = P.client_proof(auth_key, hello.server_nonce, nonce)
                reply = self.call(P.Opcode.AUTH, P.encode_meta(P.AuthRequest(nonce, proof)))
                if not P.proofs_equal(reply.server_proof, P.server_proof(auth_key, hello.server_nonce, nonce)):
                    raise KvasirAuthError(f"{where} could not prove it holds the auth key")
            return hello
        except ProtocolError as ex:
            if ex.status == P.WireStatus.AUTH_FAILED:
                raise KvasirAuthError(f"{where} refused authentication: {ex}") from None
            raise KvasirError(f"{where}: HELLO/AUTH failed: {ex}") from None
        except _Failure as ex:
            hint = ""
            if self._tls is not None and not self._tls.has_client_certificate:
                # Over TLS 1.3 a node refuses a missing client certificate after the client's side of the handshake.
                hint = "; does the node require a client certificate (tls_cert/tls_key)?"
            raise KvasirError(f"{where}: HELLO/AUTH failed: {ex}{hint}") from None

    # -- payload I/O (for on_reply handlers, run by the thread reading the reply) --

    def recv_into(self, mv: memoryview) -> None:
        self.transport.recv_into(mv)

    def drain(self, n: int) -> None:
        self.transport.drain(n)

    # -- requests --

    def send_request(self, opcode: int, meta: bytes, payload: Sequence = (), payload_length: int = 0, flags: int = 0,
                     on_reply=None, decode: bool = True, discard: bool = False) -> _Waiter:
        """Sends one request (payload pieces gathered after the metadata); returns its waiter for :meth:`read_reply`.
        Over TLS the connection's lane is held from here until :meth:`read_reply` has read the reply."""
        w = _Waiter(opcode, decode, on_reply, discard)
        if self._lane is not None:
            self._lane.acquire()
        try:
            with self._send_lock:
                with self._state:
                    if self._broken is not None:
                        raise _Failure(self._broken.code, str(self._broken))
                    rid = next(self._ids)
                    self._waiters[rid] = w
                    self._state.notify()
                head = bytearray(P.HEADER_SIZE)
                P.pack_header_into(head, 0, opcode, flags, rid, 0, len(meta), payload_length)
                head += meta
                try:
                    self.transport.send([head, *payload], self._progress)
                except _Failure as ex:
                    self._fail(ex)
                    raise
        except BaseException:
            if self._lane is not None:
                self._lane.release()
            raise
        return w

    def _progress(self) -> None:
        self._sent_at = time.monotonic()

    def read_reply(self, w: _Waiter, opcode: int = 0, decode: bool = True):
        """Waits for ``w``'s reply: (header, decoded meta), or with the waiter's ``decode`` False (header, raw meta
        bytes) for a successful reply. An error reply raises ProtocolError; a failed connection _Failure.
        ``opcode`` and ``decode`` are ignored (the waiter holds both; kept for callers written against
        ``read_reply(rid, opcode)``)."""
        if self._reader is None:   # TLS, or the handshake: this caller reads its own reply
            try:
                while not w.done.is_set():
                    self._read_one()
            except _Failure as ex:
                self._fail(ex)
            finally:
                if self._lane is not None:
                    self._lane.release()
        else:
            while not w.done.wait(self.request_timeout):
                if not self._reader.is_alive():   # never expected: the reader fails every waiter before it ends
                    self._fail(_Failure(E.UNAVAILABLE, "the connection's reader ended"))
        if w.error is not None:
            raise w.error
        return w.header, w.msg

    def request(self, opcode: int, meta: bytes, payload: Sequence = (), payload_length: int = 0, flags: int = 0,
                on_reply=None, decode: bool = True):
        """:meth:`send_request` then :meth:`read_reply`."""
        return self.read_reply(self.send_request(opcode, meta, payload, payload_length, flags, on_reply, decode))

    def call(self, opcode: int, meta: bytes, flags: int = 0):
        """A request without payload whose reply carries no payload."""
        return self.request(opcode, meta, flags=flags)[1]

    def call_raw(self, opcode: int, meta: bytes, flags: int = 0) -> bytearray:
        """:meth:`call`, returning the reply's metadata undecoded (for callers that decode whole
        arrays at once); an error reply still raises."""
        return self.request(opcode, meta, flags=flags, decode=False)[1]

    def send_deferred(self, opcode: int, meta: bytes) -> None:
        """Sends a request whose answer nobody waits for (RELEASE: saves a round trip when nothing depends on it).
        Over TLS (one request at a time) its reply is read here."""
        w = self.send_request(opcode, meta, discard=True)
        if self._reader is None:
            try:
                self.read_reply(w)
            except ProtocolError:
                pass

    # -- replies --

    def _read_loop(self) -> None:
        poller = select.poll()
        poller.register(self.transport.sock, select.POLLIN)
        try:
            while True:
                with self._state:
                    while not self._waiters and self._broken is None:
                        self._state.wait()
                    if self._broken is not None:
                        return
                # Nothing to read for request_timeout: a timeout, unless a send made progress meanwhile (a large PUT).
                if not poller.poll(self.request_timeout * 1000):
                    if self._send_lock.locked() or time.monotonic() - self._sent_at < self.request_timeout:
                        continue
                    raise _Failure(E.TIMEOUT, f"receive failed: no progress within {self.request_timeout:g} s")
                self._read_one()
        except _Failure as ex:
            self._fail(ex)
        except BaseException as ex:   # noqa: BLE001 - a bug in a handler: fail the waiters rather than leave them hanging
            self._fail(_Failure(E.PROTOCOL_ERROR, f"reading a reply failed: {type(ex).__name__}: {ex}"))

    def _read_one(self) -> None:
        """Reads one reply frame whole and completes its waiter."""
        self.transport.recv_into(memoryview(self._header))
        try:
            h = P.unpack_header(self._header)
        except ProtocolError as ex:
            raise _Failure(E.PROTOCOL_ERROR, f"malformed reply header: {ex}") from None
        with self._state:
            w = self._waiters.get(h.request_id)
        if not h.is_reply or w is None or h.opcode != w.opcode:
            raise _Failure(E.PROTOCOL_ERROR, f"unexpected reply (id {h.request_id}, opcode 0x{h.opcode:02x}) from {self.where}")
        if h.meta_length > (64 << 20):
            raise _Failure(E.PROTOCOL_ERROR, f"reply metadata of {h.meta_length} bytes")
        meta = bytearray(h.meta_length)
        self.transport.recv_into(memoryview(meta))
        msg, error = meta, None
        if w.decode or h.status != P.WireStatus.OK:
            try:
                msg = P.decode_meta(h, meta, versions=self.versions)
            except ProtocolError as ex:
                raise _Failure(E.PROTOCOL_ERROR, f"malformed {P.Opcode(w.opcode).name} reply: {ex}") from None
            if isinstance(msg, P.ErrorReply):
                error = ProtocolError(h.status, f"{P.wire_status(h.status)!s}: {msg.message}")
        if error is None and w.on_reply is not None:
            with self._state:
                self._reading = (threading.current_thread(), w)
            w.on_reply(h, msg)   # reads the payload into the caller's memory
        elif h.payload_length:
            self.transport.drain(h.payload_length)
        with self._state:
            self._waiters.pop(h.request_id, None)
            self._reading = None
        w.header, w.msg, w.error = h, msg, error
        w.done.set()

    def _fail(self, failure: _Failure) -> None:
        """The connection is gone: every waiter fails with ``failure``; later requests fail at once. A waiter whose
        payload another thread is receiving now is left to that thread, which ends it once its receive has stopped
        (completed, or failed on the closed socket): until then its caller's memory may still be written."""
        with self._state:
            first = self._broken is None
            if first:
                self._broken = failure
            waiters = list(self._waiters.values())
            self._waiters.clear()
            if self._reading is not None:
                thread, w = self._reading
                if thread is threading.current_thread():
                    self._reading = None
                    if w not in waiters:
                        waiters.append(w)
                elif w in waiters:
                    waiters.remove(w)
                    self._waiters[id(w)] = w   # still ended by the reading thread (its _read_one, or its own _fail)
            self._state.notify_all()
        if first:
            self.transport.close()
        for w in waiters:
            if not w.done.is_set():
                w.error = _Failure(failure.code, str(failure))
                w.done.set()
