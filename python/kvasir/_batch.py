"""Per-key bookkeeping shared by the batch calls of :class:`kvasir.KvStore`."""

from . import errors as E


class IndexProxy:
    """Maps positions in ``todo`` to result slots, so chunk failures mark the right keys."""

    __slots__ = ("results", "todo")

    def __init__(self, results, todo):
        self.results, self.todo = results, todo

    def __setitem__(self, pos, value):
        self.results[self.todo[pos]] = value


def valid_positions(keys, results, hello) -> list:
    """Positions of keys the node accepts; the others get INVALID_KEY in ``results``."""
    todo = []
    for i, k in enumerate(keys):
        if 1 <= len(k) <= hello.max_key_bytes:
            todo.append(i)
        else:
            results[i] = E.INVALID_KEY
    return todo


def same_length(keys, *others) -> None:
    for other in others:
        if len(other) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(other)} addresses/sizes")


def pairs(addrs, sizes):
    if len(addrs) != len(sizes):
        raise ValueError(f"{len(addrs)} addresses but {len(sizes)} sizes for one key")
    return zip(addrs, sizes)


def split(entry_sizes, hello, fixed: int = 4) -> list:
    """(start, end) chunks of entries, each within the node's ``max_batch_keys`` and
    ``max_meta_bytes``: ``fixed`` metadata bytes per request plus ``entry_sizes[i]`` per entry."""
    chunks, start, meta = [], 0, fixed
    for pos, size in enumerate(entry_sizes):
        if pos > start and (pos - start >= hello.max_batch_keys or meta + size > hello.max_meta_bytes):
            chunks.append((start, pos))
            start, meta = pos, fixed
        meta += size
    if len(entry_sizes) > start:
        chunks.append((start, len(entry_sizes)))
    return chunks


def split_keys(todo: list, keys: list, hello, per_key: int = 2) -> list:
    """:func:`split` for requests of keys (bytes16 each, plus ``per_key - 2`` bytes): positions in
    ``todo``, the indexes of the keys to send. One chunk, without a loop, when everything fits."""
    size = sum(len(keys[i]) for i in todo) + per_key * len(todo)
    if len(todo) <= hello.max_batch_keys and 4 + size <= hello.max_meta_bytes:
        return [(0, len(todo))] if todo else []
    return split([per_key + len(keys[i]) for i in todo], hello)
