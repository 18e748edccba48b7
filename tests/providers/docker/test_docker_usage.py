"""Replica CPU and memory on the real docker provider: each replica reads its own container's cgroup
(the proxy has no Docker socket), and the figures match what ``docker stats`` shows for it."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerws import DockerWorkspace, docker, docker_workspace

from cmlplan.serving.store import open_store
from cmlplan.serving.store.usage import read_usage

pytestmark = [pytest.mark.slow, pytest.mark.docker]

MODEL = "model.usage/burn"
MIB = 1 << 20
SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: monitor-usage}
spec:
  provider: local
  users: [{name: alice}]
  metrics: {flush_interval: 1s}
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {name: default}
spec: {host: 127.0.0.1, port: 8798}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: usage}
spec: {collaborators: {alice: owner}}
---
apiVersion: cmlplan/v1
kind: ApiKey
metadata: {name: alice-ops}
spec: {user: alice, expires_in: 30d}
---
apiVersion: cmlplan/v1
kind: Model
metadata: {name: burn, project: usage}
spec:
  source: {file: burn.py, function: burn}
  runtime: {python: "3.11"}
  authentication: false
  examples:
    - input: {seconds: 0.01}
  deployment: {replicas: 1, cpu: 1, memory: 512Mi}
"""
BURN = '''\
import time

HELD = b"\\x01" * (96 << 20)


def burn(args):
    end = time.process_time() + float(args["seconds"])
    while time.process_time() < end:
        pass
    return len(HELD)
'''


@pytest.fixture(scope="module")
def usage_ws(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerWorkspace]:
    source = tmp_path_factory.mktemp("usage-src")
    (source / "cmlplan.yaml").write_text(SPEC)
    (source / "burn.py").write_text(BURN)
    with docker_workspace(source, tmp_path_factory.mktemp("docker-usage") / "ws", "monitor-usage") as ws:
        ws.apply()
        yield ws


def report(ws: DockerWorkspace) -> list[dict[str, Any]]:
    return json.loads(ws.cli("metrics", MODEL, "--since", "30m", "--json", "--per-replica").stdout)["cells"]


def docker_stats_memory(container: str) -> float:
    """docker stats' MEM USAGE of the container, in bytes."""
    text = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout.split("/")[0].strip()
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1 << 30, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


def test_replica_cpu_and_memory_come_from_the_container_cgroup(usage_ws: DockerWorkspace) -> None:
    ws = usage_ws
    (replica,) = [c for c in ws.containers() if "-usage-burn-" in c]
    inspected = json.loads(docker("inspect", replica).stdout)[0]
    command = inspected["Config"]["Cmd"]
    assert command[command.index("--usage-source") + 1] == "cgroup"
    proxy = json.loads(docker("inspect", f"cmlplan-{ws.name}-proxy-0").stdout)[0]
    assert not any("docker.sock" in m.get("Source", "") for m in proxy["Mounts"])  # no engine access

    for _ in range(2):
        status, body = ws.call(MODEL, {"seconds": 1.0}, timeout=60)
        assert status == 200, body

    deadline = time.monotonic() + 90
    while True:
        cells = report(ws)
        busy = [c for c in cells if (c["cpu_cores"] or 0) > 0.05]
        if busy and sum(c["requests"] for c in cells) >= 2:
            break
        assert time.monotonic() < deadline, f"no CPU in {cells}"
        time.sleep(1)
    assert all(c["memory_limit_bytes"] == 512 * MIB for c in cells if c["memory_bytes"] is not None)
    assert all(c["cpu_limit_cores"] == 1.0 for c in cells if c["memory_bytes"] is not None)
    assert max(c["memory_bytes"] or 0 for c in cells) > 96 * MIB

    exported = urllib.request.urlopen(f"http://127.0.0.1:{ws.port}/metrics", timeout=10).read().decode()
    gauge = re.search(r'^cmlplan_replica_memory_bytes\{model="model.usage/burn".*\} (\S+)$', exported, re.MULTILINE)
    assert gauge, exported
    stats = docker_stats_memory(replica)
    assert abs(float(gauge.group(1)) - stats) < max(0.1 * stats, 8 * MIB), (gauge.group(1), stats)

    store = open_store(f"sqlite:{Path(ws.dir) / '.cmlplan' / 'run' / 'metrics.db'}")  # beside the routes, on the host
    try:
        assert sum(c.cpu_seconds for _, c in read_usage(store, MODEL, 0, 2**62)) >= 1.5
    finally:
        store.close()


def test_a_workspace_dsn_reaches_the_proxy_container_and_a_change_recreates_it(
    usage_ws: DockerWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs after the test above. The DSN points at the container's own loopback, where nothing
    listens: the proxy serves, and the metrics API says why it has no store, without the password."""
    ws = usage_ws
    proxy = f"cmlplan-{ws.name}-proxy-0"
    before = json.loads(docker("inspect", proxy).stdout)[0]["Id"]
    dsn = "postgresql://metrics:s3cret-docker@127.0.0.1:1/metrics"
    monkeypatch.setenv("MONITOR_DOCKER_DSN", dsn)
    ws.replace_in_spec("metrics: {flush_interval: 1s}", "metrics: {flush_interval: 1s, dsn: '${env:MONITOR_DOCKER_DSN}'}")
    output = ws.apply().stdout
    inspected = json.loads(docker("inspect", proxy).stdout)[0]
    assert inspected["Id"] != before and f"CMLPLAN_METRICS_DSN={dsn}" in inspected["Config"]["Env"]
    assert "s3cret" not in output + " ".join(inspected["Config"]["Cmd"])
    for path in (ws.dir / ".cmlplan" / "state.json", ws.dir / ".cmlplan" / "run" / "routes.json"):
        assert b"s3cret" not in path.read_bytes(), path
    assert ws.call(MODEL, {"seconds": 0.01})[0] == 200
    refused = ws.cli("metrics", MODEL, "--since", "5m", check=False)
    assert refused.returncode == 1 and "metrics.store_unavailable" in refused.stderr, refused.stderr
    assert "postgresql://…@127.0.0.1:1/metrics" in refused.stderr and "s3cret" not in refused.stderr

    ws.replace_in_spec(", dsn: '${env:MONITOR_DOCKER_DSN}'", "")
    ws.apply()
    assert json.loads(docker("inspect", proxy).stdout)[0]["Id"] != inspected["Id"]  # back to SQLite
    assert any(c["requests"] for c in report(ws))  # what was stored before the detour is still there
