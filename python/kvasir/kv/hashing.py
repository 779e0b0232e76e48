"""Block hash v1: chained SHA-256 over a block's parent, tokens and extra keys (docs/engine-side.md "Block hashes").

hash = SHA-256(b"KVASIR-BLOCK-V1\\x00" || parent (32 bytes, zeros for a prefix's first block)
               || u32le(len(tokens)) || u32le(token)... || u32le(len(extra_keys)) || (u32le(len(utf8)) || utf8)...)
The block id is the hash's lowercase hex; its key in a Kvasir store is ``"kvb1:" + hex``. Only full blocks
are hashed. Byte-identical with Kvasir.Prefix (.NET); golden vectors in tests/vectors/block_hashes.json.
"""
import hashlib
import struct
from typing import Iterable, List, Optional, Sequence, Union

__all__ = ["BLOCK_HASH_MAGIC", "ZERO_PARENT", "hash_block", "compute_block_hashes", "block_key", "KEY_PREFIX"]

BLOCK_HASH_MAGIC = b"KVASIR-BLOCK-V1\x00"
ZERO_PARENT = bytes(32)
KEY_PREFIX = "kvb1:"
_MAX_TOKEN = 2 ** 32 - 1


def _parent_bytes(parent: Union[None, str, bytes]) -> bytes:
    if parent is None:
        return ZERO_PARENT
    raw = bytes.fromhex(parent) if isinstance(parent, str) else bytes(parent)
    if len(raw) != 32:
        raise ValueError(f"a parent hash is 32 bytes (64 hex characters), not {len(raw)} bytes")
    return raw


def _extra_bytes(extra_keys: Optional[Iterable[str]]) -> bytes:
    keys = list(extra_keys or ())
    out = bytearray(struct.pack("<I", len(keys)))
    for k in keys:
        if not isinstance(k, str):
            raise ValueError(f"extra keys are strings, not {type(k).__name__}")
        raw = k.encode("utf-8")
        out += struct.pack("<I", len(raw)) + raw
    return bytes(out)


def _token_bytes(tokens: Sequence[int]) -> bytes:
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= _MAX_TOKEN:
            raise ValueError(f"token {t!r} is outside 0 .. 2**32-1")
    return struct.pack(f"<I{len(tokens)}I", len(tokens), *tokens)


def hash_block(parent: Union[None, str, bytes], tokens: Sequence[int], extra_keys: Optional[Iterable[str]] = None) -> str:
    """The hex block id of one block of ``tokens`` chained on ``parent`` (hex, 32 bytes, or None)."""
    h = hashlib.sha256(BLOCK_HASH_MAGIC)
    h.update(_parent_bytes(parent))
    h.update(_token_bytes(list(tokens)))
    h.update(_extra_bytes(extra_keys))
    return h.hexdigest()


def compute_block_hashes(tokens: Sequence[int], block_size: int, extra_keys: Optional[Iterable[str]] = None,
                         parent: Union[None, str, bytes] = None) -> List[str]:
    """floor(len(tokens) / block_size) hex block ids, each chained on the previous (the first on ``parent``,
    default the zero parent). Raises ValueError for block_size < 1 or a token outside 0 .. 2**32-1."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, not {block_size!r}")
    tokens = list(tokens)
    for t in tokens:   # every token, the partial tail's too: an invalid list is refused whatever its length
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= _MAX_TOKEN:
            raise ValueError(f"token {t!r} is outside 0 .. 2**32-1")
    extra = _extra_bytes(extra_keys)
    prev = _parent_bytes(parent)
    out = []
    for i in range(len(tokens) // block_size):
        h = hashlib.sha256(BLOCK_HASH_MAGIC)
        h.update(prev)
        h.update(struct.pack(f"<I{block_size}I", block_size, *tokens[i * block_size:(i + 1) * block_size]))
        h.update(extra)
        prev = h.digest()
        out.append(prev.hex())
    return out


def block_key(block_id: str) -> str:
    """The block's key in a Kvasir store: ``"kvb1:" + hex`` (69 bytes)."""
    return KEY_PREFIX + block_id
