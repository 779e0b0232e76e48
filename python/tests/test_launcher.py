"""The repository's ``./kvasir`` launcher rebuilds the CLI whenever an input of the build is newer than its last build.
Each test runs a copy of the real script in a scratch tree that mirrors the repository's layout, with a stand-in
``dotnet`` on PATH that records its calls: a rebuild shows as a ``publish`` call, without the minutes a real one takes."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import REPO

FAKE_DOTNET = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
"""


@pytest.fixture
def tree(tmp_path):
    """A scratch repository with the launcher, one source file of each kind the build reads, and a build stamp
    newer than all of them (the stamp dated ten minutes back, every file an hour back: a file touched now is newer
    than the stamp even where file times move in coarse steps)."""
    root = tmp_path / "repo"
    files = ["src/Kvasir.Cli/Program.cs", "src/Kvasir.Cli/Kvasir.Cli.csproj", "src/Kvasir.Server/Admin/dashboard.html",
             "src/Shared/GhostKeys.cs", "python/kvasir/registry_lua/heartbeat.lua", "Directory.Build.props",
             "Directory.Packages.props", "global.json"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")
    shutil.copy(os.path.join(REPO, "kvasir"), root / "kvasir")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dotnet").write_text(FAKE_DOTNET)
    (bindir / "dotnet").chmod(0o755)
    stamp = root / ".build" / "cli" / ".built"
    stamp.parent.mkdir(parents=True)
    stamp.touch()
    now = time.time()
    os.utime(stamp, (now - 600, now - 600))
    for f in files:
        os.utime(root / f, (now - 3600, now - 3600))
    return root, bindir


def launch(root, bindir):
    """Runs ``./kvasir --version`` in the scratch tree; the stand-in dotnet's calls, one line each."""
    calls = bindir / "calls"
    calls.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    r = subprocess.run([str(root / "kvasir"), "--version"], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return calls.read_text().splitlines()


def rebuilt(calls):
    return any(c.startswith("publish ") for c in calls)


def test_a_launch_with_nothing_changed_runs_the_last_build_without_rebuilding(tree):
    calls = launch(*tree)
    assert not rebuilt(calls), calls
    assert calls == [f"{tree[0]}/.build/cli/kvasir.dll --version"]


@pytest.mark.parametrize("changed", ["src/Kvasir.Cli/Program.cs", "src/Kvasir.Server/Admin/dashboard.html",
                                     "python/kvasir/registry_lua/heartbeat.lua", "Directory.Build.props", "global.json"])
def test_a_change_to_any_input_the_build_reads_or_embeds_rebuilds_the_cli(tree, changed):
    # The registry's Lua scripts live in python/ and are embedded into Kvasir.Cluster: a change to them alone
    # left the old scripts in the CLI.
    root, _ = tree
    (root / changed).touch()
    assert rebuilt(launch(*tree)), f"a change to {changed} did not rebuild the CLI"
