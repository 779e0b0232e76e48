"""An embedded node for the Python client: a ``kvasir serve`` child process bound to this process's lifetime."""

import signal
import subprocess
import threading
import time
from typing import List, Optional

from . import node_binary
from .errors import KvasirError


class EmbeddedNode:
    """A ``kvasir serve`` child process that lends this client's memory to the cluster.

    The Python package cannot host the .NET node inside the interpreter, so the node runs as a child
    process tied to this one: it is stopped (SIGTERM) by :meth:`close` and, on Linux, killed if this
    process dies (PR_SET_PDEATHSIG, armed from a thread that lives as long as the process: see :func:`_spawn`). It registers in Redis like any other node (kind "embedded").
    The command is ``KVASIR_BIN`` (e.g. ``"dotnet /opt/kvasir/kvasir.dll"``), else ``kvasir`` on
    PATH, else this checkout's ``.build/cli/kvasir.dll``."""

    def __init__(self, capacity, data_plane_addr: str, client_id: Optional[str], redis_url: Optional[str],
                 cluster: str, auth_key_hex: Optional[str], timeout: float = 30.0):
        host, _, port = data_plane_addr.rpartition(":")
        if not host or not port.isdigit():
            raise KvasirError(f"data_plane_addr {data_plane_addr!r} is not HOST:PORT")
        args = [*self._command(), "serve", "--host", host.strip("[]"), "--port", port, "--memory", str(capacity),
                "--log-level", "warning"]
        if redis_url:
            args += ["--redis", redis_url, "--cluster", cluster, "--kind", "embedded"]
        if client_id:
            args += ["--node-id", client_id]
        if auth_key_hex:
            args += ["--auth-key", auth_key_hex]
        self.proc = _spawn(args)
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            line = self.proc.stdout.readline().decode("utf-8", "replace")
            if line.startswith("kvasir: serving on "):
                addr = line.split()[3]
                self.addr = addr
                self.node_id = client_id or addr
                break
            if line:
                lines.append(line.rstrip())
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                self.close()
                raise KvasirError(f"embedded node did not start: {' | '.join(lines[-5:])}")
        # Keep draining its output so a chatty node never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _command() -> List[str]:
        command, why = node_binary.locate()
        if command is None:
            raise KvasirError(f"cannot start an embedded node: {why}")
        return command

    def _drain(self) -> None:
        try:
            for _ in self.proc.stdout:
                pass
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


_spawner_lock = threading.Lock()
_spawner_jobs = None


def _spawn(args) -> subprocess.Popen:
    """Starts the node from one thread that lives as long as this process: PR_SET_PDEATHSIG fires when the *thread*
    that forked the child ends, so a node started straight from the caller's thread (an engine building its connector
    on a worker thread) would be killed as soon as that thread finished."""
    global _spawner_jobs
    import queue  # noqa: PLC0415
    with _spawner_lock:
        if _spawner_jobs is None:
            _spawner_jobs = queue.Queue()
            threading.Thread(target=_spawner, args=(_spawner_jobs,), name="kvasir-node-spawner", daemon=True).start()
    done = threading.Event()
    job = {"args": args, "done": done}
    _spawner_jobs.put(job)
    done.wait()
    if "error" in job:
        raise job["error"]
    return job["proc"]


def _spawner(jobs) -> None:
    while True:
        job = jobs.get()
        try:
            job["proc"] = subprocess.Popen(job["args"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        except BaseException as ex:   # noqa: BLE001 - handed to the caller
            job["error"] = ex
        job["done"].set()


def _die_with_parent() -> None:
    try:
        import ctypes  # noqa: PLC0415
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
