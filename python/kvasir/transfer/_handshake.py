"""The per-lane handshake (docs/transfer.md § Lanes and sessions, § AUTH): HELLO, then AUTH when the
target has a key. Both sides run on a blocking socket with the handshake timeout set."""

import os
import socket
from typing import Callable, Optional

from .. import auth
from . import _wire
from ._lanes import read_frame

CLIENT_LABEL = b"KVASIR-XFER-1/client"
SERVER_LABEL = b"KVASIR-XFER-1/server"


class HandshakeError(Exception):
    pass


def _expect_reply(sock: socket.socket, opcode: int, request_id: int) -> bytes:
    try:
        h, meta = read_frame(sock, 0)
    except _wire.FrameError as e:
        raise HandshakeError(f"bad {_wire.OPCODE_NAMES[opcode]} reply: {e}") from None
    if not h.is_reply or h.opcode != opcode or h.request_id != request_id:
        raise HandshakeError(f"expected the {_wire.OPCODE_NAMES[opcode]} reply, got opcode 0x{h.opcode:02x}")
    if h.status != _wire.OK:
        hint = " (wrong auth key?)" if h.status == _wire.AUTH_FAILED else ""
        raise HandshakeError(f"target refused {_wire.OPCODE_NAMES[opcode]}: {_wire.status_name(h.status)}{hint}")
    return meta


def client(sock: socket.socket, hello: _wire.HelloRequest, key: Optional[bytes]) -> _wire.HelloReply:
    """Runs the initiator's side on one lane; raises HandshakeError with the reason."""
    sock.sendall(_wire.encode_frame(_wire.HELLO, 1, _wire.encode_hello_request(hello)))
    try:
        rep = _wire.decode_hello_reply(_expect_reply(sock, _wire.HELLO, 1))
    except _wire.FrameError as e:
        raise HandshakeError(f"bad HELLO reply: {e}") from None
    if rep.auth_required and key is None:
        raise HandshakeError("target requires authentication: pass auth_key (64 hex characters)")
    if key is not None and not rep.auth_required:
        raise HandshakeError("target does not ask for authentication but this engine has an auth key; "
                             "refusing to talk to an unauthenticated peer")
    if rep.auth_required:
        cnonce = os.urandom(_wire.NONCE_BYTES)
        proof = auth.labelled_proof(key, CLIENT_LABEL, rep.server_nonce, cnonce)
        sock.sendall(_wire.encode_frame(_wire.AUTH, 2, _wire.encode_auth_request(_wire.AuthRequest(cnonce, proof))))
        try:
            sproof = _wire.decode_auth_reply(_expect_reply(sock, _wire.AUTH, 2))
        except _wire.FrameError as e:
            raise HandshakeError(f"bad AUTH reply: {e}") from None
        if not auth.proofs_equal(sproof, auth.labelled_proof(key, SERVER_LABEL, rep.server_nonce, cnonce)):
            raise HandshakeError("target's auth proof is wrong (it holds another key)")
    return rep


def _refuse(sock: socket.socket, opcode: int, request_id: int, status: int, reason: str) -> HandshakeError:
    try:
        sock.sendall(_wire.encode_header(opcode, request_id, 0, reply=True, status=status))
    except OSError:
        pass
    return HandshakeError(reason)


def _read_request(sock: socket.socket, opcode: int, out_of_turn: int, decode):
    """Reads the request the handshake expects next: (header, decoded metadata); any other frame is
    answered ``out_of_turn`` (BAD_SESSION before HELLO, AUTH_REQUIRED before AUTH)."""
    name = _wire.OPCODE_NAMES[opcode]
    try:
        h, meta = read_frame(sock, 0)
    except _wire.FrameError as e:
        raise _refuse(sock, opcode, 0, e.status, f"bad frame where {name} was expected: {e}") from None
    if h.is_reply or h.opcode != opcode:
        raise _refuse(sock, h.opcode, h.request_id, out_of_turn, f"a request before {name}")
    try:
        return h, decode(meta)
    except _wire.FrameError as e:
        raise _refuse(sock, opcode, h.request_id, e.status, str(e)) from None


def server(sock: socket.socket, engine_id: bytes, max_slice: int, key: Optional[bytes],
           fits: Callable[[_wire.HelloRequest], Optional[str]]) -> _wire.HelloRequest:
    """Runs the target's side on one accepted lane; ``fits`` says why a lane does not fit its session
    (None when it does). Raises HandshakeError after answering the fault."""
    h, hello = _read_request(sock, _wire.HELLO, _wire.BAD_SESSION, _wire.decode_hello_request)
    if hello.protocol_version != _wire.VERSION:
        raise _refuse(sock, _wire.HELLO, h.request_id, _wire.UNSUPPORTED_VERSION,
                      f"HELLO asks for protocol version {hello.protocol_version}")
    why = fits(hello)
    if why is not None:
        raise _refuse(sock, _wire.HELLO, h.request_id, _wire.BAD_SESSION, why)
    nonce = os.urandom(_wire.NONCE_BYTES) if key is not None else bytes(_wire.NONCE_BYTES)
    rep = _wire.HelloReply(key is not None, max_slice, engine_id, nonce)
    sock.sendall(_wire.encode_frame(_wire.HELLO, h.request_id, _wire.encode_hello_reply(rep), reply=True))
    if key is None:
        return hello
    h, req = _read_request(sock, _wire.AUTH, _wire.AUTH_REQUIRED, _wire.decode_auth_request)
    if not auth.proofs_equal(req.client_proof, auth.labelled_proof(key, CLIENT_LABEL, nonce, req.client_nonce)):
        raise _refuse(sock, _wire.AUTH, h.request_id, _wire.AUTH_FAILED, "wrong client proof (another auth key)")
    sproof = auth.labelled_proof(key, SERVER_LABEL, nonce, req.client_nonce)
    sock.sendall(_wire.encode_frame(_wire.AUTH, h.request_id, sproof, reply=True))
    return hello
