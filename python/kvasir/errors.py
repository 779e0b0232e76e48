"""Exceptions and per-key result codes of the Kvasir Python client.

Per-key codes follow the Mooncake / redhare convention: ``0`` (or a positive byte count) is
success, a negative number is ``-(KvStatus)`` with the numbers of the .NET client's ``KvStatus``:

=====================  =====  ==========================================================
constant               value  meaning
=====================  =====  ==========================================================
``OK``                   0    success
``NOT_FOUND``           -1    the key is not stored
``VALUE_TOO_LARGE``     -2    the value is above the node's ``max_value_bytes``
``INVALID_KEY``         -3    the key is empty or longer than the node's ``max_key_bytes``
``OUT_OF_MEMORY``       -4    the node could not make room
``TIER_FAILED``         -5    the node's disk tier could not store it (I/O error, disk full): not stored
``QUOTA_EXCEEDED``      -6    the key's namespace is at its byte budget (``--namespace-quota``): not stored;
                              ``KvStore.quota_message(key)`` names the namespace and budget
``BUFFER_TOO_SMALL``   -16    GET: the destination is smaller than the value
``TIMEOUT``            -17    no reply within the request timeout
``UNAVAILABLE``        -18    the node could not be reached or the connection broke
``PROTOCOL_ERROR``     -19    the node answered with a frame-level error or a malformed reply
``CHECKSUM_MISMATCH``  -20    GET with ``KvStore(verify_crc=True)``: the bytes received do not match the
                              CRC-32C the node sent with them, so the value is a miss (its destination
                              holds nothing useful); the batch's other keys and the connection are
                              unaffected; counted in ``KvStore.checksum_mismatches`` and logged
=====================  =====  ==========================================================

A node answer this client does not know (per-key wire codes 7..31) is reported as
``PROTOCOL_ERROR``.
"""

OK = 0
NOT_FOUND = -1
VALUE_TOO_LARGE = -2
INVALID_KEY = -3
OUT_OF_MEMORY = -4
TIER_FAILED = -5
QUOTA_EXCEEDED = -6
BUFFER_TOO_SMALL = -16
TIMEOUT = -17
UNAVAILABLE = -18
PROTOCOL_ERROR = -19
CHECKSUM_MISMATCH = -20

CODE_NAMES = {
    OK: "OK",
    NOT_FOUND: "NOT_FOUND",
    VALUE_TOO_LARGE: "VALUE_TOO_LARGE",
    INVALID_KEY: "INVALID_KEY",
    OUT_OF_MEMORY: "OUT_OF_MEMORY",
    TIER_FAILED: "TIER_FAILED",
    QUOTA_EXCEEDED: "QUOTA_EXCEEDED",
    BUFFER_TOO_SMALL: "BUFFER_TOO_SMALL",
    TIMEOUT: "TIMEOUT",
    UNAVAILABLE: "UNAVAILABLE",
    PROTOCOL_ERROR: "PROTOCOL_ERROR",
    CHECKSUM_MISMATCH: "CHECKSUM_MISMATCH",
}


def code_name(code: int) -> str:
    """Name of a per-key result: ``"OK"`` for 0 and byte counts, else the constant's name."""
    if code >= 0:
        return "OK"
    return CODE_NAMES.get(code, f"UNKNOWN({code})")


class KvasirError(Exception):
    """A call failed as a whole: bad configuration, the node unreachable at connect, ..."""


class KvasirAuthError(KvasirError):
    """The node refused our credentials, asked for credentials we do not have, or could not
    prove it holds the same auth key (or does not authenticate while we have a key)."""


class ProtocolError(KvasirError):
    """A frame broke wire protocol v1. ``status`` is the wire status code (an int, ``>= 32`` for
    frame-level errors, see :class:`kvasir.protocol.WireStatus`) that a node would answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
