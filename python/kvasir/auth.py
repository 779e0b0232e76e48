"""Mutual HMAC-SHA256 authentication of wire protocol v1 (docs/protocol.md § Authentication).
Re-exported by :mod:`kvasir.protocol`."""

import hashlib
import hmac
import os
from typing import Union

NONCE_BYTES = 32

CLIENT_LABEL = b"KVASIR-AUTH-1/client"
SERVER_LABEL = b"KVASIR-AUTH-1/server"


def parse_auth_key(key: Union[str, bytes, bytearray]) -> bytes:
    """An auth key: 64 hex characters (either case, surrounding whitespace ignored) or 32 raw bytes."""
    if isinstance(key, (bytes, bytearray)):
        if len(key) == 32:
            return bytes(key)
        try:
            key = key.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("auth key must be 32 bytes or 64 hex characters") from None
    text = str(key).strip()
    if len(text) != 64:
        raise ValueError(f"auth key must be exactly 64 hex characters (got {len(text)})")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("auth key contains a character that is not hex") from None


def read_key_file(path: str, source: str) -> str:
    """The key held in ``path`` (64 hex chars, whitespace around ignored). The file must be private: one that its
    group or others may read is refused with the chmod to run, as the CLI does."""
    from .errors import KvasirError  # noqa: PLC0415
    try:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            raise KvasirError(f"{source}: {path} is readable by other users (mode 0{mode:o}); run chmod 600 {path}")
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise KvasirError(f"{source}: cannot read {path}: {e}") from None
    try:
        parse_auth_key(text)
    except ValueError as e:
        raise KvasirError(f"{source} {path}: {e}") from None
    return text


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def labelled_proof(key: bytes, label: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """HMAC-SHA256(key, label || server nonce || client nonce): the proof of every handshake that
    shares this scheme; each protocol has its own labels, so a proof made for one never passes at another."""
    return hmac.new(key, bytes(label) + bytes(server_nonce) + bytes(client_nonce), hashlib.sha256).digest()


def client_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return labelled_proof(key, CLIENT_LABEL, server_nonce, client_nonce)


def server_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return labelled_proof(key, SERVER_LABEL, server_nonce, client_nonce)


def proofs_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(bytes(a), bytes(b))
