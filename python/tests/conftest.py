"""Fixtures: the kvasir package from python/, and real Kvasir nodes started through the CLI."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PYTHON_DIR)
sys.path.insert(0, PYTHON_DIR)

CLI_DLL = os.path.join(REPO, ".build", "cli", "kvasir.dll")
AUTH_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SERVING = re.compile(r"kvasir: serving on (\S+):(\d+) ")
ADMIN = re.compile(r"admin on http://(\S+?)/")


def wait_until(cond, what, timeout=20.0):
    """Polls ``cond`` every 50 ms; fails the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Node:
    """A `kvasir serve` process on a free port (or ``port``, to start a node again where it was); stdout/stderr go
    to a temp file (never a full pipe)."""

    def __init__(self, *extra, env=None, port=0):
        self.log = tempfile.NamedTemporaryFile(prefix="kvasir-node-", suffix=".log", delete=False)
        # The node reads KVASIR_* too (docs/operations.md): a test's client settings must not configure it.
        node_env = {k: v for k, v in os.environ.items() if not k.startswith("KVASIR_")}
        node_env.update(env or {})
        self.proc = subprocess.Popen(["dotnet", CLI_DLL, "serve", "--port", str(port), *extra], env=node_env,
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            with open(self.log.name, encoding="utf-8", errors="replace") as f:
                text = f.read()
                m = SERVING.search(text)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                admin = ADMIN.search(text)
                self.admin = f"http://{admin.group(1)}" if admin else None
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log.name, encoding="utf-8", errors="replace") as f:
                    raise RuntimeError(f"kvasir node did not start: {f.read()[-2000:]}")
            time.sleep(0.05)
        self.address = f"{self.host}:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


@pytest.fixture(scope="session")
def cli():
    """Builds the CLI (./kvasir does it when sources changed) and returns the dotnet command prefix."""
    r = subprocess.run([os.path.join(REPO, "kvasir"), "--help"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and os.path.exists(CLI_DLL), r.stderr[-3000:]
    return ["dotnet", CLI_DLL]


# The main node: 16 MiB values, batches of at most 100 keys (so client-side splitting is exercised).
NODE_ARGS = ("--memory", "256MiB", "--max-value", "16MiB", "--max-batch", "100")


@pytest.fixture(scope="session")
def node(cli):
    n = Node(*NODE_ARGS)
    yield n
    n.stop()


@pytest.fixture(scope="session")
def auth_node(cli):
    n = Node("--memory", "64MiB", "--auth-key", AUTH_KEY)
    yield n
    n.stop()


@pytest.fixture
def own_node(cli):
    """A node for one test only (the test may stop it)."""
    n = Node("--memory", "64MiB")
    yield n
    n.stop()


@pytest.fixture(params=["tcp", "shm"])
def store(node, monkeypatch, request):
    """A store over each transport: every store test runs over TCP and over shared memory."""
    from kvasir import KvStore
    for var in ("KVASIR_CONFIG", "KVASIR_SERVERS", "KVASIR_AUTH_KEY", "KVASIR_TRANSPORT",
                "KVASIR_CONNECT_TIMEOUT", "KVASIR_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    s = KvStore(node.address, transport=request.param, request_timeout=10)
    assert s.transport == request.param
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("KVASIR_CONFIG", "KVASIR_SERVERS", "KVASIR_AUTH_KEY", "KVASIR_TRANSPORT",
                "KVASIR_CONNECT_TIMEOUT", "KVASIR_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
