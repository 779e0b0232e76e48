"""Shared by the transfer engine tests: engines, connected pairs, the interop peer as a process."""

import json
import os
import queue
import signal
import subprocess
import threading
import time

import numpy as np

from kvasir.transfer import Engine

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PYTHON_DIR)
CLI_DLL = os.path.join(REPO, ".build", "cli", "kvasir.dll")
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_KEY = "ff" * 32


def pattern(length: int, seed: int) -> np.ndarray:
    """The interop peer's fill: byte i = (i * 131 + seed) mod 251."""
    return ((np.arange(length, dtype=np.int64) * 131 + seed) % 251).astype(np.uint8)


def random_bytes(length: int, seed: int) -> np.ndarray:
    return np.frombuffer(np.random.default_rng(seed).bytes(length), dtype=np.uint8).copy()


def connected(a: Engine, b: Engine):
    """Connects a to b; returns (a's conn_id, b's conn_id)."""
    ok, ca = a.connect(a.ip, b.port)
    assert ok, a.last_error
    ok, _, _, cb = b.accept(timeout=10)
    assert ok, b.last_error
    return ca, cb


def poll_until_done(engine: Engine, transfer_id: int, what: str, timeout: float = 60.0) -> bool:
    """Polls a transfer until it finished; returns True when it completed, False when it failed."""
    deadline = time.monotonic() + timeout
    while True:
        ok, done = engine.poll_async(transfer_id)
        if not ok or done:
            return ok
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_connection_closed(engine: Engine, conn_id: int, timeout: float = 10.0) -> str:
    """Waits until ``conn_id`` is closed (the lane's reader closes the session just after the socket); its reason."""
    deadline = time.monotonic() + timeout
    while engine.connection_error(conn_id) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"connection {conn_id} still open after {timeout:g} s")
        time.sleep(0.01)
    return engine.connection_error(conn_id)


def wait_notif(engine: Engine, what: str, timeout: float = 20.0):
    got = engine.wait_notifs(timeout)
    assert got, f"timed out waiting for {what}"
    assert len(got) == 1, got
    return got[0]


class Peer:
    """The interop peer (docs/transfer.md § Interop peer) as a separate process: Python's or .NET's."""

    def __init__(self, kind: str, *args, netns: str = None):
        if kind == "python":
            cmd = ["/usr/bin/python3", "-m", "kvasir.transfer.peer", *args]
        else:
            cmd = ["dotnet", CLI_DLL, "transfer-peer", *args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self._lines: "queue.Queue" = queue.Queue()
        self._err = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True).start()
        ev = self.event("listening", timeout=60)
        self.port = ev["port"]
        self.metadata = bytes.fromhex(ev["metadata"])

    def _pump(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def event(self, name: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for the peer's {name!r} event") from None
            if line is None:
                code = self.proc.wait(timeout=10)
                err = b"".join(self._err[-20:]).decode(errors="replace")
                raise AssertionError(f"peer exited ({code}) before {name!r}: {err[-2000:]}")
            ev = json.loads(line)
            if ev.get("event") == "error" and name != "error":
                raise AssertionError(f"peer failed: {ev.get('message')}")
            if ev.get("event") == name:
                return ev

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()
