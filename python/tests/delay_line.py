"""A delayed link between the root network namespace and another one, for kernels without sch_netem.

Two point-to-point tun devices, one moved into the namespace, and a forwarder process (this file run as a program)
that holds both: every IP packet read from one is written to the other ``delay_ms`` later, so TCP between the two
addresses sees a real round trip of twice the delay, and its windows, autotuning and loss recovery behave as over a
long link. Packets beyond a queue of ``--queue`` per direction are dropped, as a router's would be. The forwarder is
a Python process of its own (not a thread of the test), so it does not share the test's interpreter lock; it moves
about 1-2 GB/s on the 2-core CI machine, enough for correctness tests and for showing what lanes do over latency,
not for wire-speed figures.

    with DelayLine(ns, delay_ms=1.0) as link:    # link.host_if, link.host_ip, link.ns_if, link.ns_ip
        ...

Run alone (``python3 delay_line.py HOST_IF NS NS_IF DELAY_MS [--queue N] [--owner PID]``) it creates the two devices
(NS_IF inside namespace NS), prints ``ready`` and forwards until SIGTERM, or until its parent, PID, dies; the devices
vanish with it. (DelayLine passes --owner: start it from a thread that outlives the link, as PR_SET_PDEATHSIG goes by
the parent thread.)
"""

import collections
import ctypes
import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
MTU = 65000


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def _enter_netns(ns: str) -> None:
    """Moves this process into network namespace ``ns`` (``ip netns`` names it under /run/netns)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:    # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
    finally:
        os.close(fd)


def forward(a: int, b: int, delay_s: float, queue_limit: int, stop) -> None:
    """Moves packets a -> b and b -> a, each held ``delay_s``, until ``stop()``; drops past ``queue_limit``."""
    pending = {a: collections.deque(), b: collections.deque()}   # by destination: (due, packet)
    other = {a: b, b: a}
    while not stop():
        now = time.monotonic()
        timeout = 0.5
        for dst, q in pending.items():
            while q and q[0][0] <= now:
                try:
                    os.write(dst, q.popleft()[1])
                except OSError as e:
                    # Not taken (EAGAIN), or that side is not up yet (EIO): a lost packet, as on a real link.
                    if e.errno not in (errno.EAGAIN, errno.EIO, errno.EBADFD):
                        raise
            if q:
                timeout = min(timeout, q[0][0] - now)
        ready, _, _ = select.select([a, b], [], [], max(timeout, 0))
        due = time.monotonic() + delay_s
        for src in ready:
            q = pending[other[src]]
            for _ in range(64):     # drain what is there, then go back to the clock
                try:
                    packet = os.read(src, MTU + 64)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno != errno.EBADFD:
                        raise
                    break   # the device is not up yet
                if len(q) < queue_limit:
                    q.append((due, packet))


def _ip(*args, netns=None):
    cmd = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


class VethPair:
    """A veth pair from the root namespace (``host_if``, ``{subnet}.1``) into ``ns`` (``ns_if``, ``{subnet}.2``), with
    netem ``delay_ms`` each way when asked and the kernel has it: ``delayed`` says whether it does, ``netem_error`` why
    not. A pair whose set-up fails half way is removed before the error propagates (its fixed names would block the
    next one); ``close()`` removes it. Shared by test_transfer_netns.py and the transfer benches."""

    def __init__(self, ns: str, host_if: str, ns_if: str, subnet: str, delay_ms: float = 0):
        self.host_if, self.ns_if = host_if, ns_if
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"
        self.delayed, self.netem_error = False, None
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        try:
            _ip("link", "set", ns_if, "netns", ns)
            _ip("addr", "add", f"{self.host_ip}/24", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("addr", "add", f"{self.ns_ip}/24", "dev", ns_if, netns=ns)
            _ip("link", "set", ns_if, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)
            if delay_ms:
                r = subprocess.run(["tc", "qdisc", "add", "dev", host_if, "root", "netem", "delay", f"{delay_ms}ms"],
                                   capture_output=True, text=True, timeout=30)
                if r.returncode:
                    self.netem_error = r.stderr.strip()
                else:
                    _tc_in(ns, "qdisc", "add", "dev", ns_if, "root", "netem", "delay", f"{delay_ms}ms")
                    self.delayed = True
        except BaseException:
            self.close()
            raise

    def close(self):
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)


def _tc_in(ns, *args):
    r = subprocess.run(["ip", "netns", "exec", ns, "tc", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise RuntimeError(f"tc {' '.join(args)} in {ns} failed: {r.stderr.strip()}")


class DelayLine:
    """The link: ``host_if``/``host_ip`` in the root namespace, ``ns_if``/``ns_ip`` in ``ns``; one-way delay
    ``delay_ms``. Needs root and /dev/net/tun; raises RuntimeError with the reason where it cannot be made."""

    def __init__(self, ns: str, delay_ms: float, tag: str = None, subnet: str = "10.231.78", queue: int = 4096):
        tag = tag or str(os.getpid() % 100000)
        self.ns, self.delay_ms = ns, delay_ms
        self.host_if, self.ns_if = f"kvdh{tag}", f"kvdn{tag}"
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"
        self._queue = queue
        self._proc = None

    def __enter__(self):
        if not os.path.exists("/dev/net/tun"):
            raise RuntimeError("no /dev/net/tun on this machine")
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), self.host_if, self.ns, self.ns_if, str(self.delay_ms), "--queue", str(self._queue),
             "--owner", str(os.getpid())],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = self._proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"the delay line's forwarder did not start: {line} {self._proc.stderr.read().strip()}")
            _ip("addr", "add", self.host_ip, "peer", self.ns_ip, "dev", self.host_if)
            _ip("link", "set", self.host_if, "mtu", str(MTU), "up")
            _ip("addr", "add", self.ns_ip, "peer", self.host_ip, "dev", self.ns_if, netns=self.ns)
            _ip("link", "set", self.ns_if, "mtu", str(MTU), "up", netns=self.ns)
            _ip("link", "set", "lo", "up", netns=self.ns)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._proc is not None:
            self._proc.stdout.close()
            self._proc.stderr.close()
        self._proc = None

    def __exit__(self, *exc):
        self.close()


def main(argv):
    host_if, ns, ns_if, delay_ms = argv[0], argv[1], argv[2], float(argv[3])
    queue = int(argv[argv.index("--queue") + 1]) if "--queue" in argv else 4096
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    if "--owner" in argv:
        # SIGTERM when the process that started this one dies, cleanup or not (a test killed outright), so the devices
        # and the namespace they keep go with it; an owner already gone before that was set is seen by its parent id.
        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:    # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != int(argv[argv.index("--owner") + 1]):
            return
    a = _open_tun(host_if)
    _enter_netns(ns)        # the other device is made inside the namespace; both fds work from anywhere
    b = _open_tun(ns_if)
    print("ready", flush=True)
    forward(a, b, delay_ms / 1000, queue, lambda: bool(stopping))


if __name__ == "__main__":
    main(sys.argv[1:])
