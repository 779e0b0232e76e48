"""Admin HTTP of a real node: health, ready, status, Prometheus metrics (parsed by prometheus_client,
a real parser, plus the format rules it is lenient about), bearer auth, and the dashboard in
headless Chromium with a screenshot."""
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import kvasir
from conftest import AUTH_KEY, REPO, Node, wait_until

OUT = os.path.join(REPO, ".build", "test-output")


def _get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


@pytest.fixture(scope="module")
def admin_node(cli):
    n = Node("--memory", "64MiB")
    assert n.admin, "serve did not print its admin address"
    yield n
    n.stop()


def _load(node, seconds, stop=None, transport="tcp"):
    """Puts and gets against the node for at most ``seconds`` (bounded)."""
    deadline = time.monotonic() + seconds
    with kvasir.KvStore(node.address, transport=transport) as store:
        i = 0
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            store.put(f"load/{i % 200}", b"x" * 4096)   # 1 put : 3 gets : 1/2 exists, so the three lines differ
            for j in range(3):
                store.get(f"load/{(i * 7 + j) % 220}")   # a few keys never put: misses too
            if i % 2 == 0:
                store.batch_is_exist([f"load/{i % 50}"])
            i += 1


def test_health_ready_and_status_describe_the_node(admin_node):
    status, ctype, body = _get(admin_node.admin + "/v1/health")
    assert status == 200 and ctype.startswith("application/json")
    assert json.loads(body) == {"status": "healthy", "components": {"arena": {"status": "ok"}}}
    status, _, body = _get(admin_node.admin + "/v1/ready")
    assert status == 200 and json.loads(body)["ready"] is True
    _load(admin_node, 0.3)
    status, _, body = _get(admin_node.admin + "/v1/status")
    s = json.loads(body)
    assert status == 200
    assert s["node_id"] == admin_node.address
    assert s["tiers"]["dram"]["capacity_bytes"] == 64 << 20
    assert 0 < s["tiers"]["dram"]["used_bytes"] <= 64 << 20
    assert s["keys"] > 0 and 0 <= s["hit_ratio"] <= 1
    assert s["ops"]["put"]["keys"] > 0 and s["ops"]["get"]["requests"] > 0
    for field in ("version", "uptime_seconds", "evictions", "leases", "pinned_keys", "connections", "bytes_in", "bytes_out"):
        assert field in s
    assert _get(admin_node.admin + "/nope")[0] == 404


NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"$')


def _strict_rules(text):
    """The exposition rules: HELP then TYPE before a family's samples, valid names and labels,
    histogram buckets with ascending le, cumulative counts, +Inf equal to _count."""
    typed = {}
    seen_samples = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert NAME.match(name) and name not in seen_samples, line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram") and name not in typed, line
            typed[name] = kind
        else:
            m = re.match(r"^([^{ ]+)(?:\{(.*)\})? (\S+)$", line)
            assert m, f"bad sample line: {line!r}"
            name, labels, value = m.groups()
            float(value)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in typed else name
            assert family in typed, f"sample before its TYPE: {line}"
            seen_samples.add(family)
            if labels:
                for part in re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"', labels):
                    assert LABEL.match(part), line
    return typed


def test_metrics_parse_with_a_real_parser_and_the_format_rules(admin_node):
    _load(admin_node, 0.3)
    status, ctype, text = _get(admin_node.admin + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    typed = _strict_rules(text)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client strips _total from counter family names.
    for name in ("kvasir_requests", "kvasir_keys", "kvasir_received_bytes", "kvasir_sent_bytes", "kvasir_evictions", "kvasir_hits"):
        assert families[name].type == "counter", name
    for name in ("kvasir_connections", "kvasir_tier_used_bytes", "kvasir_tier_capacity_bytes", "kvasir_leases", "kvasir_degraded"):
        assert families[name].type == "gauge", name
    hist = families["kvasir_request_duration_seconds"]
    assert hist.type == "histogram" and typed["kvasir_request_duration_seconds"] == "histogram"
    by_op = {}
    for s in hist.samples:
        by_op.setdefault((s.labels["op"], s.labels["status"]), []).append(s)
    assert {("get", "ok"), ("put", "ok"), ("exists", "ok")} <= set(by_op)
    for op, samples in by_op.items():
        buckets = [s for s in samples if s.name.endswith("_bucket")]
        bounds = [float(s.labels["le"]) for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), op
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), f"{op}: buckets not cumulative"
        count = next(s.value for s in samples if s.name.endswith("_count"))
        assert counts[-1] == count > 0
    requests = {(s.labels["op"], s.labels["status"]): s.value for s in families["kvasir_requests"].samples}
    assert requests[("put", "ok")] > 0 and requests[("get", "ok")] > 0
    tiers = {s.labels["tier"]: s.value for s in families["kvasir_tier_capacity_bytes"].samples}
    assert tiers == {"dram": 64 << 20}


def test_counters_move_under_load(admin_node):
    def scrape():
        fams = {f.name: f for f in text_string_to_metric_families(_get(admin_node.admin + "/metrics")[2])}
        reqs = sum(s.value for s in fams["kvasir_requests"].samples if s.labels["op"] == "get")
        return reqs, fams["kvasir_received_bytes"].samples[0].value
    before = scrape()
    _load(admin_node, 0.5)
    after = scrape()
    assert after[0] > before[0] and after[1] > before[1]


def test_with_an_auth_key_status_and_metrics_need_the_bearer_token(cli):
    n = Node("--memory", "16MiB", "--auth-key", AUTH_KEY)
    try:
        token = subprocess.run([*cli, "admin-token", "--auth-key", AUTH_KEY], capture_output=True, text=True, timeout=60).stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", token)
        assert _get(n.admin + "/v1/health")[0] == 200
        assert _get(n.admin + "/v1/ready")[0] == 200
        for path in ("/v1/status", "/metrics", "/", "/v1/heatmap"):
            assert _get(n.admin + path)[0] == 401, path
            assert _get(n.admin + path, token="0" * 64)[0] == 401, path
            assert _get(n.admin + path, token=token)[0] == 200, path
        assert _get(n.admin + "/v1/status?token=" + token)[0] == 200
    finally:
        n.stop()


def test_the_dashboard_draws_live_charts_in_headless_chromium(admin_node):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (./test.sh installs it)"
    os.makedirs(OUT, exist_ok=True)
    stop = threading.Event()
    load = threading.Thread(target=_load, args=(admin_node, 30, stop, "auto"))   # shared memory: LEASE/ALLOC count as GET/PUT
    load.start()
    try:
        time.sleep(0.5)
        common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--window-size=1400,900", "--virtual-time-budget=5000"]
        dom = subprocess.run([*common, "--dump-dom", admin_node.admin + "/"], capture_output=True, text=True, timeout=120).stdout
        body = re.search(r"<body[^>]*>", dom).group(0)
        assert 'data-live="1"' in body, f"charts never showed non-zero data: {body}"
        assert int(re.search(r'data-refreshes="(\d+)"', body).group(1)) >= 3
        assert "<polyline" in dom and "fill-opacity" in dom   # line charts and heatmap cells were drawn
        shot = os.path.join(OUT, "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        subprocess.run([*common, f"--screenshot={shot}", admin_node.admin + "/"], capture_output=True, timeout=120)
        assert os.path.getsize(shot) > 10_000
    finally:
        stop.set()
        load.join(timeout=60)


def _cluster_view(node):
    status, _, body = _get(node.admin + "/v1/cluster")
    return json.loads(body) if status == 200 else {"members": []}


def test_the_dashboard_shows_latency_bandwidth_errors_config_and_both_members_of_a_two_node_cluster(cli):
    from test_cluster import Redis   # a real redis-server on a free port
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (./test.sh installs it)"
    redis = Redis()
    name = f"dash{os.getpid()}"
    nodes = []
    stop = threading.Event()
    load = None
    try:
        nodes = [Node("--memory", "64MiB", "--redis", redis.url, "--cluster", name, "--heartbeat-ttl", "1") for _ in range(2)]
        first, second = nodes
        wait_until(lambda: sum(m["live"] for m in _cluster_view(first)["members"]) == 2, "the first node to see 2 live members")
        view = _cluster_view(first)
        assert view["cluster"] == name
        assert {m["id"] for m in view["members"]} == {first.address, second.address}
        assert {m["admin"] for m in view["members"]} == {first.admin[len("http://"):], second.admin[len("http://"):]}
        load = threading.Thread(target=_load, args=(first, 30, stop, "tcp"))
        load.start()
        time.sleep(0.5)
        common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--window-size=1400,1400", "--virtual-time-budget=6000"]
        dom = subprocess.run([*common, "--dump-dom", first.admin + "/"], capture_output=True, text=True, timeout=120).stdout
        body = re.search(r"<body[^>]*>", dom).group(0)
        assert int(re.search(r'data-refreshes="(\d+)"', body).group(1)) >= 3, body
        assert 'data-members="2"' in body, f"the members panel did not list 2 nodes: {body}"
        # Latency per op with p50 and p99 in ms, bandwidth in GB/s, both with axes and a time scale.
        assert re.search(r"GET p50 \d+\.\d{3} ms · p99 \d+\.\d{3} ms", dom), "no GET latency line"
        assert re.search(r"in \d+\.\d{3} GB/s · out \d+\.\d{3} GB/s", dom), "no bandwidth line"
        for svg in ("lat", "bw"):
            chart = re.search(rf'<svg id="{svg}".*?</svg>', dom, re.S).group(0)
            assert "<polyline" in chart and 'class="xtick"' in chart and "-60 s" in chart and "now" in chart, f"{svg}: no line or time axis"
            assert re.search(r'class="ytick"[^>]*>[\d.]+<', chart) and re.search(r'class="yunit"[^>]*>(ms|GB/s)<', chart), f"{svg}: no y axis with its unit"
        assert "Errors and refusals" in dom and "protocol errors" in dom and "tier errors" in dom
        assert "Configuration" in dom and "chainlfu eviction" in dom and f"<td>{name}</td>" in dom
        for n in nodes:   # each member by id, with a link to its own dashboard
            assert n.address in dom and f'href="{n.admin}/"' in dom, f"member {n.address} missing"
        assert "(this node)" in dom and "build " in dom
        shot = os.path.join(OUT, "dashboard-cluster.png")
        os.makedirs(OUT, exist_ok=True)
        if os.path.exists(shot):
            os.unlink(shot)
        subprocess.run([*common, f"--screenshot={shot}", first.admin + "/"], capture_output=True, timeout=120)
        assert os.path.getsize(shot) > 10_000
    finally:
        stop.set()
        if load is not None:
            load.join(timeout=60)
        for n in nodes:
            n.stop()
        redis.stop()


def test_every_metric_the_grafana_dashboard_and_the_alert_rules_name_exists_in_a_real_nodes_metrics(cli, tmp_path):
    import yaml
    docs = os.path.join(REPO, "docs", "monitoring")
    with open(os.path.join(docs, "grafana-dashboard.json"), encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"])
    with open(os.path.join(docs, "prometheus-alerts.yml"), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    named = {m for e in exprs for m in re.findall(r"\bkvasir_[a-z0-9_]+", e)}
    assert len(named) >= 12, named
    n = Node("--memory", "64MiB", "--disk", str(tmp_path / "disk"), "--disk-capacity", "256MiB")
    try:
        _load(n, 0.5)   # the request families appear with the first request
        status, _, text = _get(n.admin + "/metrics")
        assert status == 200
        exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
        missing = sorted(named - exposed)
        assert not missing, f"named in docs/monitoring but not in /metrics: {missing}"
    finally:
        n.stop()
