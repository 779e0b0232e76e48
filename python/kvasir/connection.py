"""One TCP connection to a node: HELLO/AUTH, framed requests, zero-copy sends and receives."""

import ctypes
import itertools
import socket
from typing import Optional, Sequence

from . import errors as E
from . import protocol as P
from .errors import KvasirAuthError, KvasirError, ProtocolError

CLIENT_NAME = "kvasir-py/0.1"
_IOV_MAX = 512  # iovecs per sendmsg call (Linux allows 1024)
_TLS_COALESCE = 16 * 1024  # over TLS, pieces up to this size are joined into one write (one record, one syscall)
_DRAIN_CHUNK = 1 << 20

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


class _Failure(Exception):
    """Internal: the request in progress failed with per-key ``code``; the connection is gone."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


# --- memory ----------------------------------------------------------------------------------------

def _view(ptr: int, size: int) -> memoryview:
    """A writable byte memoryview over ``size`` bytes at address ``ptr`` (no copy)."""
    if size == 0:
        return memoryview(bytearray())
    return memoryview((ctypes.c_char * size).from_address(ptr)).cast("B")


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

class _Connection:
    """One TCP connection after HELLO (and AUTH). Not thread-safe: the store's lock guards it."""

    def __init__(self, host: str, port: int, auth_key: Optional[bytes], connect_timeout: float, request_timeout: float,
                 tls=None):
        self.request_timeout = request_timeout
        self._tls = tls
        self._deferred = None
        self._ids = itertools.count(1)
        self._header = bytearray(P.HEADER_SIZE)
        self._scratch = None
        self.versions = False   # the node granted value versions (HELLO bit 0x4): PUT may carry VERSION, GET replies carry versions
        self.arena_features = False   # the node granted ARENA_PROOF (0x8): ALLOC may carry MAPPED (and TTL with 0x2), COMMIT COMMIT_CRC
        self.arena_proof = None   # this connection's proof that it reads the arena (set when shared memory is negotiated on it)
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
            self.hello = self._handshake(host, port, auth_key)
            self.versions = bool(self.hello.features & P.FEATURE_VERSIONS)
            self.arena_features = bool(self.hello.features & P.FEATURE_ARENA_PROOF)
            self.sock.settimeout(request_timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _handshake(self, host, port, auth_key) -> P.HelloReply:
        where = f"{host}:{port}"
        try:
            # VALUE_CRC, TTL, versions and the arena proof are asked for always: granted, a PUT may carry the writer's CRCs
            # (KvStore(value_crc=True)), a time to live (put(..., ttl=)) and versions, and a shared-memory ALLOC skips the
            # node's zeroing; requests without them are unchanged
            hello = self.call(P.Opcode.HELLO, P.encode_meta(P.HelloRequest(
                features=P.FEATURE_VALUE_CRC | P.FEATURE_TTL | P.FEATURE_VERSIONS | P.FEATURE_ARENA_PROOF, client_name=CLIENT_NAME)))
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

    # -- low-level I/O --

    def _io_failure(self, ex: BaseException, what: str) -> _Failure:
        if isinstance(ex, socket.timeout):
            return _Failure(E.TIMEOUT, f"{what}: no progress within {self.sock.gettimeout():g} s")
        return _Failure(E.UNAVAILABLE, f"{what}: {ex}")

    def send(self, buffers: list) -> None:
        """Writes every buffer in order (gathered with sendmsg, looping on partial sends)."""
        bufs = [b if isinstance(b, memoryview) else memoryview(b) for b in buffers if len(b)]
        if self._tls is not None:
            self._send_tls(bufs)
            return
        i = 0
        try:
            while i < len(bufs):
                sent = self.sock.sendmsg(bufs[i:i + _IOV_MAX])
                while sent:
                    n = len(bufs[i])
                    if sent >= n:
                        sent -= n
                        i += 1
                    else:
                        bufs[i] = bufs[i][sent:]
                        sent = 0
        except OSError as ex:
            raise self._io_failure(ex, "send failed") from None

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
            raise self._io_failure(ex, "send failed") from None

    def recv_into(self, mv: memoryview) -> None:
        off, n = 0, len(mv)
        try:
            while off < n:
                got = self.sock.recv_into(mv[off:], n - off)
                if got == 0:
                    raise _Failure(E.UNAVAILABLE, "the node closed the connection")
                off += got
        except OSError as ex:
            raise self._io_failure(ex, "receive failed") from None

    def drain(self, n: int) -> None:
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_DRAIN_CHUNK))
        while n > 0:
            k = min(n, _DRAIN_CHUNK)
            self.recv_into(self._scratch[:k])
            n -= k

    # -- frames --

    def send_request(self, opcode: int, meta: bytes, payload: Sequence = (), payload_length: int = 0, flags: int = 0) -> int:
        if self._deferred is not None:
            self.flush_deferred()
        rid = next(self._ids)
        head = bytearray(P.HEADER_SIZE)
        P.pack_header_into(head, 0, opcode, flags, rid, 0, len(meta), payload_length)
        head += meta
        self.send([head, *payload])
        return rid

    def read_reply(self, rid: int, opcode: int, decode: bool = True):
        """Reads a reply header and metadata; returns (header, decoded meta) — or, with ``decode``
        False, (header, raw meta bytes) for a successful reply. Frame-level errors raise."""
        self.recv_into(memoryview(self._header))
        try:
            h = P.unpack_header(self._header)
        except ProtocolError as ex:
            raise _Failure(E.PROTOCOL_ERROR, f"malformed reply header: {ex}") from None
        if not h.is_reply or h.request_id != rid or h.opcode != opcode:
            raise _Failure(E.PROTOCOL_ERROR, f"unexpected reply (id {h.request_id}, opcode 0x{h.opcode:02x}) "
                                             f"to request {rid} (opcode 0x{opcode:02x})")
        if h.meta_length > (64 << 20):
            raise _Failure(E.PROTOCOL_ERROR, f"reply metadata of {h.meta_length} bytes")
        meta = bytearray(h.meta_length)
        self.recv_into(memoryview(meta))
        if not decode and h.status == P.WireStatus.OK:
            return h, meta
        try:
            msg = P.decode_meta(h, meta, versions=self.versions)
        except ProtocolError as ex:
            raise _Failure(E.PROTOCOL_ERROR, f"malformed {P.Opcode(opcode).name} reply: {ex}") from None
        if isinstance(msg, P.ErrorReply):
            raise ProtocolError(h.status, f"{P.wire_status(h.status)!s}: {msg.message}")
        return h, msg

    def call(self, opcode: int, meta: bytes, flags: int = 0):
        """A request without payload whose reply carries no payload."""
        rid = self.send_request(opcode, meta, flags=flags)
        return self.read_reply(rid, opcode)[1]

    def call_raw(self, opcode: int, meta: bytes, flags: int = 0) -> bytearray:
        """:meth:`call`, returning the reply's metadata undecoded (for callers that decode whole
        arrays at once); an error reply still raises."""
        rid = self.send_request(opcode, meta, flags=flags)
        return self.read_reply(rid, opcode, decode=False)[1]

    def send_deferred(self, opcode: int, meta: bytes) -> None:
        """Sends a request whose reply is read (and checked) just before the next request is sent:
        saves a round trip when nothing depends on the answer (RELEASE)."""
        self.flush_deferred()
        self._deferred = (self.send_request(opcode, meta), opcode)

    def flush_deferred(self) -> None:
        pending = self._deferred
        if pending is not None:
            self._deferred = None
            self.read_reply(*pending)
