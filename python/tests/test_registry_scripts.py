"""The registry's Lua scripts have one copy, kvasir/registry_lua/*.lua: the Python client loads those files, the .NET
registry embeds the same ones (src/Kvasir.Cluster/Kvasir.Cluster.csproj), and the installed package carries them."""
import os
import re
import subprocess
import sys

from kvasir import cluster

from conftest import REPO

FOLDER = os.path.join(REPO, "python", "kvasir", "registry_lua")
NAMES = ["heartbeat", "list", "poll", "read", "unregister"]


def _file(name: str) -> bytes:
    with open(os.path.join(FOLDER, name + ".lua"), "rb") as f:
        return f.read()


def test_the_scripts_the_client_runs_are_the_files_exact_bytes():
    assert sorted(n[:-4] for n in os.listdir(FOLDER) if n.endswith(".lua")) == NAMES
    assert cluster._READ.encode("utf-8") == _file("read")
    assert cluster._POLL.encode("utf-8") == _file("poll")
    for name in NAMES:
        assert cluster.registry_script(name).encode("utf-8") == _file(name)


def test_the_dotnet_registry_embeds_this_folder_and_runs_no_script_text_of_its_own():
    with open(os.path.join(REPO, "src", "Kvasir.Cluster", "Kvasir.Cluster.csproj"), encoding="utf-8") as f:
        csproj = f.read()
    included = re.findall(r'<EmbeddedResource Include="([^"]+)"', csproj)
    assert included == ["../../python/kvasir/registry_lua/*.lua"]
    assert os.path.realpath(os.path.join(REPO, "src", "Kvasir.Cluster", os.path.dirname(included[0]))) == os.path.realpath(FOLDER)
    for root, _, files in os.walk(os.path.join(REPO, "src")):
        for name in files:
            if name.endswith(".cs"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    assert "redis.call(" not in f.read(), f"{name} holds Lua text: scripts live in python/kvasir/registry_lua"


def test_an_installed_package_carries_the_script_files(tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--no-cache-dir", "--target", str(target), os.path.join(REPO, "python")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in NAMES:
        assert (target / "kvasir" / "registry_lua" / f"{name}.lua").read_bytes() == _file(name)
    # the installed module loads them from its own folder, not this checkout's
    probe = subprocess.run([sys.executable, "-c", "import kvasir.cluster as c; print(c.__file__); print(c._READ, end='')"],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": str(target)})
    assert probe.returncode == 0, probe.stderr
    where, text = probe.stdout.split("\n", 1)
    assert where.startswith(str(target))
    assert text.encode("utf-8") == _file("read")
