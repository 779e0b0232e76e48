"""Network namespaces for bench/chaos.py's partition mode (issue 16): each node gets its own namespace joined to the
root namespace by a veth pair with private addresses (10.233.S.4i+1 on the root side, 10.233.S.4i+2 in the
namespace, a /30 per node; nothing routes off the host), so a partition can cut one node's link while Redis and the
client stay in the root namespace.

A cut is a silent drop, as a real partition is: a ``pfifo`` queue of length 0 on both ends of the veth pair drops
every packet (the kernel here has no sch_netem, no iptables/nft and no tc drop action; ``ip link set down`` on one
end did not stop traffic). Connections stay open and requests time out; nothing is refused.

Everything made is named after the creating process (``kvchaos-PID-I``, ``kvcPIDIh``) and removed by
:meth:`Links.close` (also on Ctrl-C, through the caller's ``finally``); namespaces left by a process that was
killed, and the nodes in them, are removed by the next :class:`Links`. Needs root and ``ip``/``tc``; :func:`unavailable` says in one line
why not where they are missing."""
import os
import random
import shutil
import subprocess

PREFIX = "kvchaos-"


def _run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()}")
    return r


def unavailable() -> str:
    """Why this machine cannot run the partition mode (a one-line reason), or "" when it can: root, ``ip`` and ``tc``
    present, and a namespace can be made (and is removed at once)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN for ip netns add)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"no '{tool}' on PATH (Debian: apt-get install iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode:
        return f"this machine forbids network namespaces: ip netns add: {r.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_orphans() -> list:
    """Removes namespaces (and, with them, their veth pairs) left by a partition run whose process is gone (killed
    with SIGKILL), after killing the nodes still running in them (``ip netns pids``: only processes inside that run's
    own namespace). That run's redis-server, in the root namespace, is not found this way."""
    gone = []
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            for left in _run("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(left), 9)
                except (ValueError, ProcessLookupError):
                    pass
            _run("ip", "netns", "del", name, check=False)
            gone.append(name)
    return gone


class Links:
    """``count`` namespaces, one per node, each joined to the root namespace by a veth pair."""

    def __init__(self, count: int):
        remove_orphans()
        pid = os.getpid()
        used = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
        free = [s for s in range(256) if f" 10.233.{s}." not in used]
        if not free:
            raise RuntimeError("no free 10.233.S.0/24 subnet for the partition links")
        subnet = random.choice(free)
        self.names = [f"{PREFIX}{pid}-{i}" for i in range(count)]
        self.host_ifs = [f"kvc{pid % 100000}{i}h" for i in range(count)]
        self.ns_ifs = [f"kvc{pid % 100000}{i}n" for i in range(count)]
        self.gateways = [f"10.233.{subnet}.{4 * i + 1}" for i in range(count)]   # the root side: Redis listens here
        self.addrs = [f"10.233.{subnet}.{4 * i + 2}" for i in range(count)]      # the node's address
        self.cut = [False] * count
        self._made = []
        try:
            for i in range(count):
                self._make(i)
        except BaseException:
            self.close()
            raise

    def _make(self, i: int):
        ns, h, n = self.names[i], self.host_ifs[i], self.ns_ifs[i]
        _run("ip", "netns", "add", ns)
        self._made.append(i)
        _run("ip", "link", "add", h, "type", "veth", "peer", "name", n)
        _run("ip", "link", "set", n, "netns", ns)
        _run("ip", "addr", "add", f"{self.gateways[i]}/30", "dev", h)
        _run("ip", "link", "set", h, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addrs[i]}/30", "dev", n)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", n, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def exec_prefix(self, i: int) -> list:
        """The command prefix that runs a program in node i's namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.names[i]]

    def partition(self, i: int):
        """Cuts node i off: every packet either way across its link is dropped."""
        _run("tc", "qdisc", "add", "dev", self.host_ifs[i], "root", "pfifo", "limit", "0")
        _run("ip", "netns", "exec", self.names[i], "tc", "qdisc", "add", "dev", self.ns_ifs[i], "root", "pfifo", "limit", "0")
        self.cut[i] = True

    def heal(self, i: int):
        _run("tc", "qdisc", "del", "dev", self.host_ifs[i], "root", check=False)
        _run("ip", "netns", "exec", self.names[i], "tc", "qdisc", "del", "dev", self.ns_ifs[i], "root", check=False)
        self.cut[i] = False

    def close(self) -> list:
        """Removes every link and namespace made (the processes in them must be stopped first); returns what could
        not be removed."""
        left = []
        for i in self._made:
            _run("ip", "link", "del", self.host_ifs[i], check=False)
            if _run("ip", "netns", "del", self.names[i], check=False).returncode:
                left.append(self.names[i])
        self._made = []
        return left
