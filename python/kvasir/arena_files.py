"""The liveness rule of a node's shared-memory arena files (``ARENA``, ``ARENA.token``, ``ARENA.lock`` in /dev/shm):
the twin of the .NET ``Kvasir.Net.ArenaFiles``, same rule, where the reasoning is written out in full
(docs/operations.md § Shared-memory arena files).

The node holds an exclusive BSD ``flock`` on ``ARENA.lock`` for its life; the kernel drops it when the process dies
(SIGKILL, the OOM killer), a stopped or slow process keeps it. ``fcntl.flock`` is that same lock (.NET's FileShare and
the node's own flock call use it); ``fcntl.lockf`` is not: POSIX record locks are a separate table on Linux and do not
see flock locks, so this module never uses them. The node's lock file appears already locked (created under another
name, locked, then linked into place), so a free lock is a dead node's, never one a node is starting with.

Whoever takes the free lock and finds the file it locked still at ``ARENA.lock`` removes the arena, the token and then
the lock file, holding the lock throughout; everyone who unlinks ``ARENA.lock`` holds its lock meanwhile (the node at
a clean stop, a prober), so two probers never both remove, and no node can start under the name meanwhile.
"""

import fcntl
import os

LIVE = "live"         # the lock is held (a live node, slow or stopped ones too), or could not be probed: nothing touched
REMOVED = "removed"   # the lock was free: the node is dead, and this call removed its files
ABSENT = "absent"     # no lock file, or not the one opened: removed already, or a node too old to take the lock


def try_remove_if_dead(arena_path: str) -> str:
    """Removes a node's arena files when the node is dead (its lock file exists and nobody holds its lock); returns
    :data:`LIVE`, :data:`REMOVED` or :data:`ABSENT`. Never blocks and never raises for files it cannot open or remove.
    For the microseconds another prober holds a dead node's lock while removing its files, the arena looks live."""
    lock_path = arena_path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return LIVE
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return LIVE
        try:
            named = os.stat(lock_path)
        except FileNotFoundError:
            return ABSENT
        except OSError:
            return LIVE
        mine = os.fstat(fd)
        if (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
            return ABSENT   # unlinked (and the name taken again) since it was opened: another prober's work
        for path in (arena_path, arena_path + ".token", lock_path):
            try:
                os.unlink(path)
            except OSError:
                pass   # gone already, or not ours to remove
        return REMOVED
    finally:
        os.close(fd)
