"""The /monitoring page in headless Chromium: it loads, its charts hold the requests just served.

A screenshot is kept in ``$CMLPLAN_TEST_ARTIFACTS`` (default ``<repo>/.test-artifacts``).
"""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cmlplan.serving.store import open_store
from cmlplan.serving.store.usage import read_usage

REPO = Path(__file__).resolve().parents[3]
KEY, API_KEY = "ak-monitoring", "api-monitoring-viewer"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup)")


def browse(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000", *extra, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def points(dom: str, chart: str) -> list[dict]:
    match = re.search(rf"id=\"chart-{chart}\" data-points=\"([^\"]*)\"", dom) or re.search(
        rf"id=\"chart-{chart}\" data-points='([^']*)'", dom
    )
    assert match, f"chart {chart} not in the page"
    return json.loads(html.unescape(match.group(1)))


def test_the_page_charts_the_requests_just_served(serving, tmp_path):
    replicas = [serving.replica("add", f"add-{i}") for i in range(2)]
    entry = serving.model_entry("model.iris/add", replicas)
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {KEY: entry},
        api_keys={API_KEY: {"name": "viewer", "user": "bob"}},
        projects={"iris": {"bob": "viewer"}},
    )
    document = json.loads(routes.read_text())
    db = tmp_path / "metrics.db"
    document["proxy"].update(metrics_store={"url": f"sqlite:{db}"}, technical_flush_seconds=0.2)
    routes.write_text(json.dumps(document))
    proxy = serving.proxy(routes)
    for _ in range(6):
        assert serving.call_model(proxy, KEY, {"a": 1, "b": 2}).status == 200
    assert serving.call_model(proxy, KEY, {"a": 1}).status == 500  # a model exception: a failed request

    def counted() -> int:
        store = open_store(f"sqlite:{db}")
        try:
            return sum(b.requests for _, b in store.read_technical("model.iris/add", 0, 2**62))
        finally:
            store.close()

    def sampled() -> int:  # CPU needs two samples of a replica; every replica has had them
        store = open_store(f"sqlite:{db}")
        try:
            return len({c.replica for _, c in read_usage(store, "model.iris/add", 0, 2**62) if c.wall_seconds > 0})
        finally:
            store.close()

    serving.wait_until(lambda: counted() == 7 and sampled() == 2, timeout=10)

    page = serving.http("GET", proxy.url + "/monitoring")
    assert page.status == 200 and b"model.iris/add" not in page.raw  # the shell holds no data

    url = f"{proxy.url}/monitoring#key={API_KEY}&model=model.iris/add"
    run = browse(url, tmp_path, "--dump-dom")
    dom = run.stdout
    assert 'data-loaded="true"' in dom, run.stderr[-2000:]
    assert 'data-total="7"' in dom
    assert sum(p["requests"] for p in points(dom, "requests")) == 7
    assert sum(p["failures"] for p in points(dom, "failures")) == 1
    latency = points(dom, "latency")
    assert latency and all(p["p50_ms"] > 0 and p["p99_ms"] >= p["p50_ms"] for p in latency)
    assert sum(p["request_bytes"] for p in points(dom, "request_bytes")) > 0
    cpu, memory = points(dom, "cpu"), points(dom, "memory")
    assert [p["t"] for p in cpu] == [p["t"] for p in points(dom, "requests")]  # one shared time axis
    assert any(p["cpu_cores"] is not None for p in cpu) and all((p["cpu_cores"] or 0) >= 0 for p in cpu)
    assert memory and all(p["memory_mib"] > 10 for p in memory)  # two replicas' resident memory, summed
    assert all(p["memory_limit_mib"] is None for p in memory)  # started without --memory-bytes
    for replica in entry["replicas"]:  # the replica menu lists the replicas that answered
        assert f"<option>{replica['id']}</option>" in dom
    assert API_KEY not in dom.split("<script>")[0].replace(f"#key={API_KEY}", "")

    artifacts = Path(os.environ.get("CMLPLAN_TEST_ARTIFACTS", REPO / ".test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "monitoring.png"
    browse(url, tmp_path, f"--screenshot={shot}", "--window-size=1280,1100", "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_a_wrong_key_shows_the_refusal_and_no_chart(serving, tmp_path):
    replica = serving.replica("add", "add-0")
    routes = serving.write_routes(tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", [replica])})
    document = json.loads(routes.read_text())
    document["proxy"]["metrics_store"] = {"url": f"sqlite:{tmp_path / 'metrics.db'}"}
    routes.write_text(json.dumps(document))
    proxy = serving.proxy(routes)
    dom = browse(f"{proxy.url}/monitoring#key=wrong&model=model.iris/add", tmp_path, "--dump-dom").stdout
    assert 'class="error"' in dom and "auth.invalid" in dom
    assert "chart-requests" not in dom
