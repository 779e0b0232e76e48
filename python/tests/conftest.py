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


def record_puts(store, method: str) -> list:
    """Wraps ``store.<method>`` (a real store's put call) so each call's keys and keyword arguments are recorded in the
    returned list before the real call runs."""
    calls = []
    real = getattr(store, method)

    def recorded(keys, *args, **kwargs):
        calls.append((list(keys), kwargs))
        return real(keys, *args, **kwargs)

    setattr(store, method, recorded)
    return calls


def wait_until(cond, what, timeout=20.0):
    """Polls ``cond`` every 50 ms; fails the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Node:
    """A `kvasir serve` process on a free port (or ``port``, to start a node again where it was); stdout/stderr go
    to a temp file (never a full pipe). ``wrap``: a command that runs it (e.g. unshare into another PID namespace)."""

    def __init__(self, *extra, env=None, port=0, wrap=()):
        self.log = tempfile.NamedTemporaryFile(prefix="kvasir-node-", suffix=".log", delete=False)
        # The node reads KVASIR_* too (docs/operations.md): a test's client settings must not configure it.
        node_env = {k: v for k, v in os.environ.items() if not k.startswith("KVASIR_")}
        node_env.update(env or {})
        self.proc = subprocess.Popen([*wrap, "dotnet", CLI_DLL, "serve", "--port", str(port), *extra], env=node_env,
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
                with open(self.log.name, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                self.stop()   # removes the log: its text was read first
                raise RuntimeError(f"kvasir node did not start: {text[-2000:]}")
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
                "KVASIR_CONNECT_TIMEOUT", "KVASIR_REQUEST_TIMEOUT", "KVASIR_AUTH_KEY_FILE",
                "KVASIR_TLS_CA", "KVASIR_TLS_SERVER_NAME", "KVASIR_TLS_CLIENT_CERT", "KVASIR_TLS_CLIENT_KEY"):
        monkeypatch.delenv(var, raising=False)


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture()
def certs():
    """PEM files made with the openssl CLI: a throwaway CA; a server certificate it signs for 127.0.0.1, localhost and
    kvasir-node.test ("server", "key"); a client certificate it signs ("client", "client-key"); another CA that signed
    the server nothing ("other-ca") and its own client certificate ("other-client", "other-client-key")."""
    with tempfile.TemporaryDirectory(prefix="kvasir-py-tls-") as d:
        for name in ("ca", "other-ca"):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
                     "-days", "2", "-subj", f"/CN=Kvasir py {name}", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        issued = (("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kvasir-node.test\nextendedKeyUsage=serverAuth\n"),
                  ("client", "ca", "extendedKeyUsage=clientAuth\n"), ("other-client", "other-ca", "extendedKeyUsage=clientAuth\n"))
        for name, ca, ext in issued:
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=kvasir-py-{name}", cwd=d)
            with open(os.path.join(d, f"{name}.cnf"), "w", encoding="ascii") as f:
                f.write(ext)
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                     "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.cnf", cwd=d)
        files = {k: os.path.join(d, f"{k}.pem") for k in ("ca", "other-ca", "server", "client", "other-client")}
        files |= {"key": os.path.join(d, "server.key"), "client-key": os.path.join(d, "client.key"),
                  "other-client-key": os.path.join(d, "other-client.key")}
        yield files
