"""Same-host shared memory (docs/transfer.md § Same host shared memory): regions allocated in files
under /dev/shm (mode 0600: only the same Unix user opens them), and the initiator's mappings of the
files named by advertisements, reused while the file is the same one (same inode).

Who removes a file: its engine, when the region is deregistered or the engine closes; and, for an engine killed
outright (SIGKILL, the OOM killer: no cleanup runs), the next engine on the host that makes a file
(:func:`remove_dead_files`). Each file is held under an exclusive ``flock`` by its maker from before it has its name
until after it is unlinked; the kernel drops the lock when the process dies, however it dies, and keeps it while the
process is merely stopped or slow. So a file whose lock can be taken has no live maker. (The same rule as the
node's arena files, kvasir.arena_files.) Files made before this rule carry no lock and are taken for dead."""

import fcntl
import glob
import mmap
import os
import threading
from typing import Dict, Optional, Tuple

SHM_DIR = "/dev/shm"
PREFIX = "kvasir-xfer-"
_swept_by = set()   # the engines (by id) that have swept: each engine's first file sweeps once
_sweep_lock = threading.Lock()


def remove_dead_files() -> int:
    """Removes every engine file in /dev/shm whose maker is dead (its lock is free); returns how many. Never blocks and
    never raises for a file it cannot open or remove (another user's, one removed meanwhile)."""
    removed = 0
    for path in glob.glob(os.path.join(SHM_DIR, PREFIX + "*")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)   # held: its engine lives
            continue
        try:
            # Still the file at that name (not one unlinked by its engine and another made since under the same name)?
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _sweep_once(engine_id: bytes) -> None:
    """An engine's first file sweeps the dead engines' files first (once per engine: a sweep reads every file's lock)."""
    with _sweep_lock:
        if engine_id in _swept_by:
            return
        _swept_by.add(engine_id)
    remove_dead_files()


class SharedFile:
    """A zero-filled file of ``nbytes`` in /dev/shm, mapped; ``array`` is a uint8 numpy view of it."""

    def __init__(self, nbytes: int, engine_id: bytes, serial: int):
        import numpy as np
        _sweep_once(engine_id)
        name = f"{PREFIX}{engine_id.hex()[:12]}-{os.getpid()}-{serial}"
        self.path = os.path.join(SHM_DIR, name)
        # Made under a name no sweep looks at, locked, then linked to its own name: the file never has its name
        # unlocked, so a sweep cannot take a file being made for a dead engine's. link() never replaces a file.
        pending = os.path.join(SHM_DIR, "." + name)
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.link(pending, self.path)
        except OSError:
            os.close(fd)
            raise
        finally:
            os.unlink(pending)
        try:
            os.ftruncate(fd, nbytes)
            self._map = mmap.mmap(fd, nbytes)
        except OSError:
            os.unlink(self.path)
            os.close(fd)
            raise
        self._fd = fd   # kept open, so its lock is held, until unlink()
        self.array = np.frombuffer(self._map, dtype=np.uint8)

    @property
    def address(self) -> int:
        return self.array.ctypes.data

    def close(self) -> None:
        """Removes the file and unmaps it (the caller holds no view of it any more)."""
        self.unlink()
        self.array = None
        try:
            self._map.close()
        except BufferError:
            pass   # a view is still held: the garbage collector unmaps it once that view goes

    def unlink(self) -> None:
        """Removes the file, then drops its lock (a file without its name needs none); the mapping lives on while the
        array is referenced."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class Mappings:
    """The initiator's mappings of targets' shared files, by path."""

    def __init__(self, on_drop=None):
        self._lock = threading.Lock()
        self._maps: Dict[str, Tuple[int, mmap.mmap]] = {}
        self._on_drop = on_drop   # called with a mapping that is replaced (the file changed)

    def mapped(self, path: str) -> Optional[mmap.mmap]:
        """The current mapping of ``path`` (after a successful :meth:`window`)."""
        with self._lock:
            known = self._maps.get(path)
        return None if known is None else known[1]

    def window(self, path: str, file_offset: int, size: int) -> Optional[memoryview]:
        """[file_offset, +size) of the file, mapped; None when it cannot be mapped (the caller uses the lanes)."""
        if not path.startswith(SHM_DIR + "/") or "/../" in path:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if file_offset + size > st.st_size:
            return None
        with self._lock:
            known = self._maps.get(path)
            if known is None or known[0] != st.st_ino or len(known[1]) < file_offset + size:
                try:
                    fd = os.open(path, os.O_RDWR)
                except OSError:
                    return None
                try:
                    known = (st.st_ino, mmap.mmap(fd, 0))
                except (OSError, ValueError):
                    return None
                finally:
                    os.close(fd)
                old = self._maps.get(path)
                self._maps[path] = known
                if old is not None and self._on_drop is not None:
                    self._on_drop(old[1])
        return memoryview(known[1])[file_offset:file_offset + size]

    def close(self) -> None:
        """Drops every mapping: ``on_drop`` first (a GPU registration of its pages must end before they are
        unmapped, or a later mapping at the same address would be DMA'd into the old pages), then unmaps it
        unless a view of it is still held (the garbage collector unmaps it once that view goes)."""
        with self._lock:
            maps, self._maps = list(self._maps.values()), {}
        for _, m in maps:
            if self._on_drop is not None:
                self._on_drop(m)
            try:
                m.close()
            except BufferError:
                pass
