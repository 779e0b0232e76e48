"""Access statistics: the shared vector, files written and read back, the kvasir-stats command."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from kvasir.kv import AccessStatsCollector, read_stats, summarize
from kvasir.kv.errors import ConfigMissingError, MetadataMismatchError
from kvasir.kv.profiling import reuse_distances
from kvasir.kv import stats as cli

HERE = os.path.dirname(os.path.abspath(__file__))
VECTOR = os.path.join(HERE, "..", "..", "tests", "vectors", "access_stats.json")


def test_the_summary_recomputed_from_the_vector_equals_the_stored_one():
    doc = read_stats(VECTOR)
    assert doc["schema"] == "kvasir-access-stats" and doc["version"] == 1
    assert summarize(doc["accesses"]) == doc["summary"]
    assert [a["t"] for a in doc["accesses"]] == sorted(a["t"] for a in doc["accesses"])


def test_reuse_distance_counts_distinct_blocks_between_accesses():
    assert reuse_distances(["a", "b", "b", "c", "b", "a"]) == [0, 1, 2]


def test_an_empty_collector_has_a_zero_hit_rate_and_no_percentiles():
    s = AccessStatsCollector().get_stats_summary()
    assert s["hit_rate"] == 0.0 and s["reuse_distance"] == {"count": 0, "p50": None, "p90": None, "p99": None}


def test_a_file_written_is_read_back_with_the_same_summary(tmp_path):
    c = AccessStatsCollector(max_events=5)
    c.record_access("block_001", is_hit=True)
    for i in range(6):
        c.record_access(f"b{i % 3}", i % 2 == 0, t=100.0 + i, tier="dram" if i % 2 == 0 else None, bytes=64, tokens=16)
    path = tmp_path / "stats.json"
    written = c.export_stats(str(path))
    doc = read_stats(str(path))
    assert doc == json.loads(json.dumps(written))
    assert doc["dropped"] == 2 and len(doc["accesses"]) == 5 and doc["source"] == "python"
    assert doc["end_unix_ms"] >= doc["start_unix_ms"] + 105
    s = c.get_stats_summary()
    assert s == doc["summary"] and s["total_accesses"] == 5 and s["hits_by_tier"] == {"dram": 2}
    with pytest.raises(ValueError):
        c.record_access("x", True, tier="gpu")


def test_another_schema_or_a_newer_version_is_refused(tmp_path):
    for bad in ({"schema": "other", "version": 1}, {"schema": "kvasir-access-stats", "version": 2}):
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(MetadataMismatchError):
            read_stats(str(p))


def test_demo_and_summary_from_the_command_line(tmp_path):
    out = tmp_path / "demo.json"
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
    r = subprocess.run([sys.executable, "-m", "kvasir.kv.stats", "demo", "--num-accesses", "1000", "--output", str(out)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    doc = read_stats(str(out))
    s = doc["summary"]
    assert s["total_accesses"] == 1000 and 0.2 < s["hit_rate"] < 0.98 and s["unique_blocks"] > 50
    assert s["hits_by_tier"].get("engine", 0) > 0 and summarize(doc["accesses"]) == s
    r = subprocess.run([sys.executable, "-m", "kvasir.kv.stats", "summary", "--input", str(out), "--json"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == s


def test_visualize_names_every_place_it_looked_for_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_REPO", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KVASIR_BIN", raising=False)
    with pytest.raises(ConfigMissingError) as e:
        cli.find_cli()
    assert "KVASIR_BIN" in str(e.value) and "PATH" in str(e.value) and str(tmp_path / "kvasir") in str(e.value)
    monkeypatch.setenv("KVASIR_BIN", str(tmp_path / "nope"))
    with pytest.raises(ConfigMissingError):
        cli.find_cli()


def test_visualize_passes_its_arguments_to_kvasir_stats_visualize(tmp_path, monkeypatch):
    fake = tmp_path / "kvasir"
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KVASIR_BIN", str(fake))
    assert cli.main(["visualize", "--input", os.path.abspath(VECTOR), "--output", "x.png", "--type", "all", "--summary"]) == 0
    assert (tmp_path / "args").read_text().split() == ["stats", "visualize", "--input", os.path.abspath(VECTOR),
                                                       "--output", "x.png", "--type", "all", "--summary"]


def test_a_python_demo_file_is_drawn_by_the_real_cli_into_four_distinct_pngs(tmp_path, cli):
    # The whole path a Python user takes: kvasir-stats demo, then visualize through the .NET CLI (./kvasir, built).
    out = tmp_path / "demo.json"
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
    env.pop("KVASIR_BIN", None)
    for argv in (["demo", "--num-accesses", "2000", "--output", str(out)],
                 ["visualize", "--input", str(out), "--output", str(tmp_path / "py.png"), "--type", "all"]):
        r = subprocess.run([sys.executable, "-m", "kvasir.kv.stats", *argv], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    images = [(tmp_path / f"py-{kind}.png").read_bytes() for kind in ("heatmap", "hitrate", "reuse", "timeline")]
    for png in images:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(set(images)) == 4


def test_the_wheel_declares_the_kvasir_stats_console_script(tmp_path):
    sys.path.insert(0, os.path.join(HERE, "..", "_build"))
    try:
        import kvasir_build
    finally:
        sys.path.pop(0)
    with zipfile.ZipFile(tmp_path / kvasir_build.build_wheel(str(tmp_path))) as whl:
        entry = whl.read("kvasir-0.1.0.dist-info/entry_points.txt").decode()
        assert "kvasir/kv/stats.py" in whl.namelist()
    assert "kvasir-stats = kvasir.kv.stats:main" in entry


def test_a_file_the_dotnet_cli_writes_is_read_here_with_the_same_summary(tmp_path, cli):
    # The other direction of the shared format: `kvasir stats demo` (.NET) writes schema v1; Python reads it and
    # recomputes the summary from its accesses, which must equal the one .NET stored.
    path = tmp_path / "dotnet.json"
    r = subprocess.run(cli + ["stats", "demo", "--num-accesses", "3000", "--output", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    doc = read_stats(str(path))
    assert doc["summary"]["total_accesses"] == 3000
    assert summarize(doc["accesses"]) == doc["summary"]
