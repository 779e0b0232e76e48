"""The GET-side end of the end-to-end checksum (``KvStore(verify_crc=True)``; docs/protocol.md § Strict GET and CRC32C).

A :class:`ValueCheck` belongs to one single-node store: whether its GET hits are checked against the CRC-32C their
node sent (over TCP in the GET reply, over shared memory in the LEASE reply) and how many failed. A hit that fails is
``CHECKSUM_MISMATCH`` for that key alone: its bytes were read off the socket in full (or copied out of the arena and
the lease released as usual), so the connection is still in step and the batch's other keys are exact. Each mismatch
is counted once and logged once, at WARNING on the ``kvasir`` logger, as the .NET client's ``ValueCheck`` does.
"""

import logging
import threading

from . import protocol as P

_log = logging.getLogger("kvasir")


class ValueCheck:
    """Whether hits are verified (``enabled``) and the mismatches seen (``mismatches``); safe to share between threads."""

    __slots__ = ("enabled", "_mismatches", "_lock")

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self._mismatches = 0
        self._lock = threading.Lock()

    @property
    def mismatches(self) -> int:
        return self._mismatches

    def matches(self, crc: int, expected: int, key: bytes, length: int, node: str, transport: str) -> bool:
        """True when ``crc`` (the CRC-32C of the bytes the caller got) equals the node's ``expected``; else counts the
        mismatch and logs it once."""
        if crc == expected:
            return True
        with self._lock:
            self._mismatches += 1
        _log.warning("kvasir: CRC-32C mismatch on GET from %s over %s: key %s (%d bytes) has CRC %08x, the node sent "
                     "%08x; reported as CHECKSUM_MISMATCH", node, transport, bytes(key[:64]).hex(), length, crc, expected)
        return False


def crc_of(pieces, length: int) -> int:
    """CRC-32C of the first ``length`` bytes of ``pieces`` (memoryviews, filled in order)."""
    crc = 0
    for p in pieces:
        if length == 0:
            break
        n = min(length, len(p))
        crc = P.crc32c(p[:n], crc)
        length -= n
    return crc
