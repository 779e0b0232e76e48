#!/usr/bin/python3
"""Runs README.md's commands verbatim, in order, against real processes (issue 19: "the README's every command
works verbatim in order on a fresh clone").

    /usr/bin/python3 tests/readme/run_readme.py [--readme README.md] [--list]

What it runs: every line of every ```sh block (a line ending in a backslash joins the next), and every ```python
block as one script, in the order they appear, from the repository root, in one bash session (so `export`s carry
on to later lines, as they do for a reader). What a reader does between the lines, it does too:
- `./kvasir serve ...` runs in the background, as a reader leaves it running in a terminal of its own; the next
  line starts once its data port answers. A later `serve` on the same port stops the earlier one first (a reader
  presses Ctrl-C before starting it again), and every node is stopped with SIGTERM at the end.
- `./test.sh` is not run: this runner is one of its steps.
- Python blocks run with /usr/bin/python3 and the package from ./python on PYTHONPATH (python/README.md).
Every other line must exit 0 within 300 s.

Isolation: the whole run happens in private network and PID namespaces (unshare, as root), so the README's fixed
ports (7380, 6379, ...) cannot meet a process of this machine, and nothing it starts outlives it. HOME is a
scratch directory (the README's ~/.kvasir/auth.key lands there); files the commands write into the repository
root (kv.bin, out.bin, ...) are removed afterwards. The CLI is built before the namespaces are entered (a fresh
clone's first build restores packages from the network, which the namespace has not got).
Exit status 0 when every command passed; otherwise 1, naming the line that failed, with its output.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 300
SERVE = re.compile(r"^\./kvasir\s+serve(\s|$)")
NOT_RUN = {"./test.sh": "this runner is one of ./test.sh's steps"}


def blocks(text: str) -> list[tuple[str, int, str]]:
    """(kind, line number, command) for each sh line and each python block, in order."""
    out, kind, body, start, pending, pending_line = [], None, [], 0, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and kind is None:
            kind, body, start = (fence.group(1) or "text"), [], number
            continue
        if fence and kind is not None:
            if kind == "python":
                out.append(("python", start + 1, "\n".join(body) + "\n"))
            kind = None
            continue
        if kind == "python":
            body.append(line)
        elif kind == "sh":
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith("\\"):
                pending, pending_line = pending + stripped[:-1] + " ", pending_line or number
                continue
            out.append(("sh", pending_line or number, (pending + stripped).strip()))
            pending, pending_line = "", 0
    return out


def port_of(command: str) -> int:
    """The data port a `./kvasir serve` line listens on (7380 unless --port says otherwise)."""
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words):
        if word == "--port" and i + 1 < len(words):
            return int(words[i + 1])
        if word.startswith("--port="):
            return int(word.split("=", 1)[1])
    return 7380


def script(steps: list[tuple[str, int, str]], scratch: str) -> str:
    """One bash script that runs the steps as a reader would (see the module's doc)."""
    q = shlex.quote
    lines = [
        "set -u",
        f"cd {q(ROOT)}",
        f"export HOME={q(os.path.join(scratch, 'home'))}",
        f"export PYTHONPATH={q(os.path.join(ROOT, 'python'))}",
        "ip link set lo up",
        "declare -A node_pid",
        "fail() { echo \"README.md:$1: FAILED (exit $2): $3\"; [ -f \"$4\" ] && tail -n 40 \"$4\"; stop_all; exit 1; }",
        # stop_node PID: SIGTERM (a reader's Ctrl-C), then up to 20 s for the drain. A node once ignored its first
        # SIGTERM here (not diagnosed, see the issue note): it is said on the output and the signal sent again.
        "stop_node() { kill -TERM \"$1\" 2>/dev/null; for _ in $(seq 200); do kill -0 \"$1\" 2>/dev/null || return 0; sleep 0.1; done;"
        " echo \"README runner: node $1 still running 20 s after SIGTERM; sending it again\"; kill -TERM \"$1\" 2>/dev/null;"
        " for _ in $(seq 200); do kill -0 \"$1\" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL \"$1\" 2>/dev/null; }",
        "stop_all() { for p in \"${node_pid[@]}\"; do stop_node \"$p\"; done; }",
        # wait_port PORT PID LOG LINE: the node's data port answers, or its process ended (its log shown)
        "wait_port() { for _ in $(seq 1200); do"
        " (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0;"
        " kill -0 \"$2\" 2>/dev/null || fail \"$4\" 'the node exited' \"port $1 never answered\" \"$3\"; sleep 0.1; done;"
        " fail \"$4\" timeout \"port $1 did not answer in 120 s\" \"$3\"; }",
    ]
    for n, (kind, line, command) in enumerate(steps):
        log = os.path.join(scratch, f"step{n}.log")
        shown = q(command if kind == "sh" else f"(python block, {command.count(chr(10))} lines)")
        if kind == "python":
            path = os.path.join(scratch, f"block{n}.py")
            with open(path, "w") as f:
                f.write(command)
            lines.append(f"echo \"README.md:{line}: \"{shown}")
            lines.append(f"timeout {TIMEOUT_S} /usr/bin/python3 {q(path)} >{q(log)} 2>&1 || fail {line} $? {shown} {q(log)}")
            continue
        bare = " ".join(shlex.split(command, comments=True))   # the command without its trailing comment
        if bare in NOT_RUN:
            lines.append(f"echo \"README.md:{line}: {bare}: not run ({NOT_RUN[bare]})\"")
            continue
        lines.append(f"echo \"README.md:{line}: \"{shown}")
        if SERVE.match(command):
            port = port_of(command)
            lines.append(f"if [ -n \"${{node_pid[{port}]:-}}\" ]; then stop_node ${{node_pid[{port}]}}; fi")
            lines.append(f"bash -c {q('exec ' + command)} >{q(log)} 2>&1 &")   # exec: $! is the node itself
            lines.append(f"node_pid[{port}]=$!")
            lines.append(f"wait_port {port} ${{node_pid[{port}]}} {q(log)} {line}")
        elif re.match(r"^(export|cd)\s", command):   # shell builtins: they change the session itself
            lines.append(command)   # its own line: a trailing comment then ends there
            lines.append(f"rc=$?; [ $rc = 0 ] || fail {line} $rc {shown} /dev/null")
        else:
            # bash -c: the line's own trailing comment cannot swallow the redirection
            lines.append(f"timeout {TIMEOUT_S} bash -c {q(command)} >{q(log)} 2>&1 || fail {line} $? {shown} {q(log)}")
            lines.append(f"sed 's/^/    /' {q(log)} | head -n 8")
    lines.append("stop_all")
    lines.append("echo 'README.md: every command passed'")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    args = parser.parse_args()
    with open(args.readme) as f:
        steps = blocks(f.read())
    if args.list:
        for kind, line, command in steps:
            print(f"{line:4} {kind:6} {command if kind == 'sh' else '(block)'}")
        return 0
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("run_readme: needs root and unshare (private network and PID namespaces for the README's fixed ports)")
        return 1
    # Build the CLI out here: a fresh clone's first build restores packages, and the namespace has no network.
    build = subprocess.run([os.path.join(ROOT, "kvasir"), "--version"], cwd=ROOT, capture_output=True, text=True)
    if build.returncode != 0:
        print(f"run_readme: ./kvasir --version failed:\n{build.stdout}{build.stderr}")
        return 1
    before = set(os.listdir(ROOT))
    scratch = tempfile.mkdtemp(prefix="kvasir-readme-")
    try:
        os.makedirs(os.path.join(scratch, "home"))
        path = os.path.join(scratch, "readme.sh")
        with open(path, "w") as f:
            f.write(script(steps, scratch))
        # --kill-child: the namespace's processes end with this runner, however it ends.
        run = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "bash", path],
                             cwd=ROOT, timeout=TIMEOUT_S * 4)
        return 0 if run.returncode == 0 else 1
    finally:
        for name in set(os.listdir(ROOT)) - before:   # what the README's commands wrote into the repository root
            target = os.path.join(ROOT, name)
            shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
