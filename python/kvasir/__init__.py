"""Kvasir: Python client of the Kvasir KV-cache store (wire protocol v1, pure standard library).

    from kvasir import KvStore
    with KvStore("127.0.0.1:7380") as store:
        store.put("k", b"value")
        store.get("k")

Per-key results are ``0`` / a positive byte count on success and ``-(KvStatus)`` on failure;
see :mod:`kvasir.errors` for the codes (``NOT_FOUND = -1`` ... ``CHECKSUM_MISMATCH = -20``).
"""

from .errors import (BUFFER_TOO_SMALL, CHECKSUM_MISMATCH, CODE_NAMES, INVALID_KEY, NOT_FOUND, OK, OUT_OF_MEMORY,
                     PROTOCOL_ERROR, TIER_FAILED, TIMEOUT, UNAVAILABLE, VALUE_TOO_LARGE, KvasirAuthError, KvasirError,
                     ProtocolError, code_name)
from .store import KvStore

__version__ = "0.1.0"

__all__ = [
    "KvStore", "KvasirError", "KvasirAuthError", "ProtocolError", "code_name", "CODE_NAMES",
    "OK", "NOT_FOUND", "VALUE_TOO_LARGE", "INVALID_KEY", "OUT_OF_MEMORY", "TIER_FAILED", "BUFFER_TOO_SMALL", "TIMEOUT",
    "UNAVAILABLE", "PROTOCOL_ERROR", "CHECKSUM_MISMATCH", "__version__",
]
