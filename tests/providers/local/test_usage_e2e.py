"""Replica CPU and memory, and a PostgreSQL metrics store, on the real local provider (supervisord).

A model that holds 96 MiB and burns CPU in its predictions shows non-zero CPU and memory in the
store, the metrics API, ``cmlplan metrics --json`` and the /monitoring charts (headless Chromium).
A Workspace whose ``metrics.dsn`` is ``${env:...}`` makes the real proxy write a real PostgreSQL
(tests/pgserver.py); the DSN is in no file, plan, output or command line; a changed setting
restarts the proxy.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localws import LiveWorkspace, live_workspace

from cmlplan.serving.store import open_store
from cmlplan.serving.store.usage import read_usage

pytestmark = pytest.mark.slow

MODEL = "model.usage/burn"
MIB = 1 << 20
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {{name: usage-e2e}}
spec:
  provider: local
  users: [{{name: alice}}]
  metrics: {metrics}
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {{name: default}}
spec: {{host: 127.0.0.1, port: 8799}}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {{name: usage}}
spec: {{collaborators: {{alice: owner}}}}
---
apiVersion: cmlplan/v1
kind: ApiKey
metadata: {{name: alice-ops}}
spec: {{user: alice, expires_in: 30d}}
---
apiVersion: cmlplan/v1
kind: Model
metadata: {{name: burn, project: usage}}
spec:
  source: {{file: burn.py, function: burn}}
  runtime: {{python: "3.11"}}
  authentication: false
  examples:
    - input: {{seconds: 0.01}}
  deployment: {{replicas: 1, cpu: 1, memory: 1Gi}}
"""
BURN = '''\
"""Holds 96 MiB (touched, so resident) and burns CPU for as long as asked; tracks what it did."""
import time

import cdsw

HELD = b"\\x01" * (96 << 20)


@cdsw.model_metrics
def burn(args):
    end = time.process_time() + float(args["seconds"])
    while time.process_time() < end:
        pass
    cdsw.track_metric("seconds", args["seconds"])
    return len(HELD)
'''


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.5)
    return value


def make_source(folder: Path, metrics: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "cmlplan.yaml").write_text(SPEC.format(metrics=metrics))
    (folder / "burn.py").write_text(BURN)
    return folder


def technical(ws: LiveWorkspace) -> list[dict[str, Any]]:
    end = int(time.time() * 1000) + 60_000
    body = json.dumps({"model": MODEL, "start_timestamp_ms": end - 3_600_000, "end_timestamp_ms": end}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{ws.port}/metrics/technical", data=body, method="POST",
        headers={"Authorization": f"Bearer {ws.key('apikey.alice-ops')}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["cells"]


@pytest.fixture(scope="module")
def usage_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorkspace]:
    root = tmp_path_factory.mktemp("usage")
    with live_workspace(make_source(root / "src", "{flush_interval: 1s}"), root / "ws") as ws:
        ws.apply()
        yield ws


def test_a_burning_replica_shows_cpu_and_memory_everywhere(usage_ws: LiveWorkspace, tmp_path: Path) -> None:
    ws = usage_ws
    (program,) = [p for p in ws.programs("r.usage.burn.")]
    command = Path(f"/proc/{program.pid}/cmdline").read_bytes().split(b"\0")
    assert command[command.index(b"--usage-source") + 1] == b"psutil"
    for _ in range(3):
        status, body = ws.call(MODEL, {"seconds": 1.0}, timeout=60)
        assert status == 200, body

    db = ws.dir / ".cmlplan" / "run" / "metrics.db"

    def stored_cpu() -> float:
        store = open_store(f"sqlite:{db}")
        try:
            return sum(c.cpu_seconds for _, c in read_usage(store, MODEL, 0, 2**62))
        finally:
            store.close()

    wait_for(
        lambda: stored_cpu() >= 2.5 and sum(c["requests"] for c in technical(ws)) >= 3,
        60, "3 CPU seconds and the 3 requests in the store",
    )  # fmt: skip
    cells = technical(ws)
    assert max(c["cpu_cores"] or 0 for c in cells) > 0.05
    assert all(c["memory_bytes"] > 96 * MIB for c in cells if c["memory_bytes"] is not None)
    assert cells[-1]["memory_limit_bytes"] == 1 << 30  # deployment.memory, as RLIMIT_DATA
    assert sum(c["requests"] for c in cells) >= 3

    report = json.loads(ws.cli("metrics", MODEL, "--since", "30m", "--json").stdout)
    assert max(c["cpu_cores"] or 0 for c in report["cells"]) > 0.05
    assert max(c["memory_bytes"] or 0 for c in report["cells"]) > 96 * MIB
    table = ws.cli("metrics", MODEL, "--since", "30m").stdout
    assert "cpu" in table.splitlines()[0] and "mem MiB" in table.splitlines()[0]

    exported = urllib.request.urlopen(f"http://127.0.0.1:{ws.port}/metrics", timeout=10).read().decode()
    cpu = re.search(r'^cmlplan_replica_cpu_seconds_total\{model="model.usage/burn",project="usage",replica="[^"]+"\} (\S+)$',
                    exported, re.MULTILINE)  # fmt: skip
    assert cpu and float(cpu.group(1)) >= 3.0

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup)")
    url = f"http://127.0.0.1:{ws.port}/monitoring#key={ws.key('apikey.alice-ops')}&model={MODEL}&range=900"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    assert 'data-loaded="true"' in dom

    def points(chart: str) -> list[dict[str, Any]]:
        match = re.search(rf"id=\"chart-{chart}\" data-points=\"([^\"]*)\"", dom)
        assert match, chart
        return json.loads(html.unescape(match.group(1)))

    assert max(p["cpu_cores"] or 0 for p in points("cpu")) > 0.05
    assert max(p["memory_mib"] or 0 for p in points("memory")) > 96


@pytest.fixture
def postgres_ws(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveWorkspace]:
    monkeypatch.setenv("USAGE_E2E_METRICS_DSN", postgres_dsn)
    source = make_source(tmp_path / "src", "{dsn: '${env:USAGE_E2E_METRICS_DSN}', flush_interval: 1s, retention_days: 30}")
    with live_workspace(source, tmp_path / "ws") as ws:
        yield ws


def test_a_workspace_dsn_makes_the_proxy_write_postgresql(postgres_ws: LiveWorkspace, postgres_dsn: str) -> None:
    import psycopg

    ws = postgres_ws
    ws.apply()
    status, body = ws.call(MODEL, {"seconds": 0.2})
    assert status == 200, body
    uuid = body["response"]["uuid"]
    with psycopg.connect(postgres_dsn) as connection:
        (metrics,) = connection.execute(  # indexed, or still in the inbox the proxy appends to
            "SELECT metrics FROM predictions WHERE uuid = %s UNION ALL SELECT metrics FROM inbox WHERE uuid = %s",
            (uuid, uuid),
        ).fetchone()
        assert json.loads(metrics) == {"seconds": 0.2}  # durable before the answer left the proxy

    def written() -> bool:
        with psycopg.connect(postgres_dsn) as connection:
            (requests,) = connection.execute("SELECT COALESCE(SUM(requests), 0) FROM technical").fetchone()
            (samples,) = connection.execute("SELECT COALESCE(SUM(samples), 0) FROM replica_usage").fetchone()
            return requests >= 1 and samples >= 2

    wait_for(written, 30, "technical and replica_usage rows in PostgreSQL")
    assert not (ws.dir / ".cmlplan" / "run" / "metrics.db").exists()
    routes = json.loads((ws.dir / ".cmlplan" / "run" / "routes.json").read_text())["proxy"]
    assert routes["metrics_store"] == {"dsn_env": "CMLPLAN_METRICS_DSN"} and routes["metrics_retention_days"] == 30

    password = postgres_dsn.split(":")[2].split("@")[0]
    assert password and password in postgres_dsn
    for path in [ws.dir / ".cmlplan" / "state.json", ws.dir / ".cmlplan" / "run" / "routes.json", *ws.dir.glob(".cmlplan/logs/*")]:
        assert password.encode() not in path.read_bytes(), path
    plan = ws.cli("plan", "--json").stdout + ws.cli("plan").stdout + "".join(ws.outputs)
    assert password not in plan
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert password not in processes
    (proxy,) = ws.programs("cmlplan-proxy-")
    environment = Path(f"/proc/{proxy.pid}/environ").read_bytes().split(b"\0")
    assert f"CMLPLAN_METRICS_DSN={postgres_dsn}".encode() in environment  # where the proxy reads it

    ws.replace_in_spec("flush_interval: 1s", "flush_interval: 2s")
    ws.apply()
    (restarted,) = ws.programs("cmlplan-proxy-")
    assert restarted.pid != proxy.pid  # read at start only: the proxy was restarted to apply it
    assert json.loads((ws.dir / ".cmlplan" / "run" / "routes.json").read_text())["proxy"]["technical_flush_seconds"] == 2
    status, body = ws.call(MODEL, {"seconds": 0.01})
    assert status == 200
    with psycopg.connect(postgres_dsn) as connection:
        (count,) = connection.execute("SELECT (SELECT COUNT(*) FROM predictions) + (SELECT COUNT(*) FROM inbox)").fetchone()
    assert count == 2  # both calls, one on each side of the restart: nothing lost
