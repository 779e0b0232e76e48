"""bench/chaos.py's partition mode (issue 16): 3 nodes, each in its own network namespace, registered in a real
redis-server, R=2 checksummed load, one node's link cut for a bounded time and restored. Needs root, `ip` and `tc`
and a redis-server; skips with the one-line reason where the machine forbids network namespaces."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import REPO, wait_until

BENCH = os.path.join(REPO, "bench")
sys.path.insert(0, BENCH)
import netns  # noqa: E402 - bench/netns.py

CHAOS = [sys.executable, os.path.join(BENCH, "chaos.py")]


@pytest.fixture
def partitionable(cli):
    why = netns.unavailable()
    if why:
        pytest.skip(f"partition mode unavailable: {why}")
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH (./test.sh installs Debian's)")


def _left_behind(pid: int, workdir: str) -> list:
    """Namespaces, links and processes a chaos run with this pid and workdir left (none, when it cleaned up)."""
    ns = [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
          if line.startswith(f"{netns.PREFIX}{pid}-")]
    links = [line for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
             if f" kvc{pid % 100000}" in line]
    procs = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if workdir.encode() in f.read() and p.isdigit():
                    procs.append(int(p))
        except OSError:
            pass
    return ns + links + procs


def _workdir(out: str) -> str:
    m = re.search(r"workdir (\S+)", out)
    assert m, out[-3000:]
    return m.group(1)


def test_a_partitioned_node_drops_out_and_serves_again_after_the_heal_with_no_wrong_stale_or_lost_value(partitionable):
    # 30 s of overwrites (versioned replicas), a node cut for 8 s every 4 s, no kills: ~2 partitions.
    proc = subprocess.Popen([*CHAOS, "--duration", "30", "--kill-every", "0", "--partition-every", "4", "--partition-for", "8",
                             "--seed", "16"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = proc.communicate(timeout=240)[0]   # 30 s of load, plus starting the nodes and reading every key back
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"chaos: 0 wrong reads, 0 stale reads, 0 lost of [1-9]\d* acknowledged keys", out), out[-4000:]
    m = re.search(r"\((\d+) of (\d+) served again\)", out)
    assert m and int(m.group(2)) >= 1 and m.group(1) == m.group(2), out[-4000:]
    assert re.search(r"partition of node \d: [1-9]\d* operations while cut", out), out[-4000:]
    assert _left_behind(proc.pid, _workdir(out)) == []


def test_an_interrupted_partition_round_removes_its_namespaces_links_and_processes(partitionable):
    proc = subprocess.Popen([*CHAOS, "--duration", "60", "--kill-every", "0", "--partition-every", "2", "--partition-for", "30",
                             "--seed", "3"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:   # bounded: the round ends by itself after 60 s
            lines.append(line)
            if " partition node " in line:
                break
        out = "".join(lines)
        assert " partition node " in out, out[-3000:]
        pid, workdir = proc.pid, _workdir(out)
        assert any(line.startswith(f"{netns.PREFIX}{pid}-") for line in
                   subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 130, (out + rest)[-3000:]
        assert "every namespace and its scratch dir removed" in rest, rest[-3000:]
        wait_until(lambda: _left_behind(pid, workdir) == [], "the interrupted round's namespaces and processes to be gone", 10)
        assert not os.path.exists(workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
