"""The TCP data path: values inside the frames of a (pipelined) connection. :mod:`kvasir.shm` is the other
path, moving values through the node's shared-memory arena; the store picks one per chunk of keys.

Each function sends one request for the keys ``idx`` and writes per-key codes to ``results``."""

from typing import Optional

from . import errors as E
from . import protocol as P
from .connection import _Failure, _code


def put_chunk(conn, keys, values, lengths, results, idx, *, chain: bool = False, parent: Optional[bytes] = None,
              value_crc: bool = False, ttl_seconds: Optional[int] = None, versions: Optional[list] = None,
              parent_follows: bool = False) -> None:
    """PUT of ``keys[i]`` = the pieces ``values[i]`` (gathered, no joining copy) for i in ``idx``. ``chain``/``parent``:
    PUT's CHAIN and CHAIN_PARENT; ``value_crc``: each value's CRC-32C when the node granted VALUE_CRC; ``versions``: each
    value's version (the caller passes them only to a node that granted versions); ``parent_follows``: the parent may be
    stored after this request (PARENT_FOLLOWS, sent where the node granted LATE_PARENT)."""
    with_crc = value_crc and bool(getattr(conn, "features", 0) & P.FEATURE_VALUE_CRC)
    flags = ((P.Flag.CHAIN if chain else 0) | (P.Flag.CHAIN_PARENT if parent else 0)
             | (P.Flag.VALUE_CRC if with_crc else 0) | (P.Flag.TTL if ttl_seconds is not None else 0)
             | (P.Flag.VERSION if versions is not None else 0)
             | (P.Flag.PARENT_FOLLOWS if parent_follows and parent and getattr(conn, "late_parent", False) else 0))
    meta = P.encode_put_meta([(keys[i], lengths[i], *((_crc_of_pieces(values[i]),) if with_crc else ())) for i in idx],
                             parent=parent, versions=[versions[i] for i in idx] if versions is not None else None,
                             ttl_seconds=ttl_seconds)
    pieces = [p for i in idx for p in values[i]]
    _, reply = conn.request(P.Opcode.PUT, meta, pieces, sum(lengths[i] for i in idx), flags=int(flags))
    if len(reply.statuses) != len(idx):
        raise _Failure(E.PROTOCOL_ERROR, "PUT reply with a wrong count")
    for i, s in zip(idx, reply.statuses):
        results[i] = _code(s)


def get_chunk(conn, keys, dests, results, allocated, idx, check=None, versions: Optional[list] = None) -> None:
    """GET of ``keys[i]`` for i in ``idx``, each hit received straight into the pieces ``dests[i]`` (None: a new
    bytearray, kept in ``allocated[i]``) by the connection's reader, no staging copy. Results: the value's length,
    or a negative code. ``versions``: filled with each hit's version. ``check``: a :class:`kvasir.value_check.ValueCheck`;
    when enabled each hit is checksummed piece by piece as it arrives and one that differs from the node's CRC-32C is
    ``CHECKSUM_MISMATCH`` for that key alone (its bytes were read whole: the connection stays in step)."""
    verify = check is not None and check.enabled

    def receive(_header, reply):   # run by the thread reading the reply
        if len(reply.entries) != len(idx):
            raise _Failure(E.PROTOCOL_ERROR, "GET reply with a wrong count")
        for i, entry in zip(idx, reply.entries):
            if entry.status != P.WireStatus.OK:
                results[i] = _code(entry.status)
                continue
            length = entry.length
            if versions is not None:
                versions[i] = entry.version
            pieces = dests[i]
            if pieces is None:
                buf = bytearray(length)
                pieces = [memoryview(buf)]
                allocated[i] = buf
            if sum(len(p) for p in pieces) < length:
                conn.drain(length)
                results[i] = E.BUFFER_TOO_SMALL
                continue
            left = length
            crc = 0
            for p in pieces:
                if left == 0:
                    break
                part = p[:min(left, len(p))]
                conn.recv_into(part)
                if verify:
                    crc = P.crc32c(part, crc)
                left -= len(part)
            if verify and not check.matches(crc, entry.crc32c, keys[i], length, conn.where, "tcp"):
                results[i] = E.CHECKSUM_MISMATCH
                allocated[i] = None
                continue
            results[i] = length

    conn.request(P.Opcode.GET, P.encode_key_batch([keys[i] for i in idx]), on_reply=receive)


def _crc_of_pieces(pieces) -> int:
    """CRC-32C of a value given as pieces, concatenated in order (VALUE_CRC)."""
    crc = 0
    for piece in pieces:
        crc = P.crc32c(piece, crc)
    return crc
