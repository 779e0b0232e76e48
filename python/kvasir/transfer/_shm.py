"""Same-host shared memory (docs/transfer.md § Same host shared memory): regions allocated in files
under /dev/shm (mode 0600: only the same Unix user opens them), and the initiator's mappings of the
files named by advertisements, reused while the file is the same one (same inode)."""

import mmap
import os
import threading
from typing import Dict, Optional, Tuple

SHM_DIR = "/dev/shm"


class SharedFile:
    """A zero-filled file of ``nbytes`` in /dev/shm, mapped; ``array`` is a uint8 numpy view of it."""

    def __init__(self, nbytes: int, engine_id: bytes, serial: int):
        import numpy as np
        self.path = os.path.join(SHM_DIR, f"kvasir-xfer-{engine_id.hex()[:12]}-{os.getpid()}-{serial}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            self._map = mmap.mmap(fd, nbytes)
        except OSError:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
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
        """Removes the file; the mapping lives on while the array is referenced."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


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
