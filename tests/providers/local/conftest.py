"""Fixtures for the local provider's end-to-end tests (helpers in localws.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from localws import EXAMPLES, PYTHON, LiveWorkspace, live_workspace


@pytest.fixture(scope="module")
def numbers_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorkspace]:
    """examples/add-numbers, applied once for the whole module (2 replicas, no authentication)."""
    with live_workspace(EXAMPLES / "add-numbers", tmp_path_factory.mktemp("e2e") / "add-numbers") as ws:
        ws.apply()
        yield ws


@pytest.fixture(scope="module")
def iris_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorkspace]:
    """examples/iris, trained and applied once for the module, with max_request_size 1KB and a
    second alice key that expired long ago."""
    with live_workspace(EXAMPLES / "iris", tmp_path_factory.mktemp("e2e") / "iris") as ws:
        subprocess.run([str(PYTHON), "fit.py"], cwd=ws.dir, check=True, capture_output=True, timeout=300)
        ws.replace_in_spec("max_request_size: 5MB", "max_request_size: 1KB")
        ws.set_spec(
            ws.spec.read_text()
            + "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-old}\n"
            "spec: {user: alice, expires_at: '2020-01-01T00:00:00Z'}\n"
        )
        ws.apply()
        yield ws


SLOW_MODEL = '''\
"""Sleeps for args["seconds"], then answers."""

import time


def slow(args):
    time.sleep(float(args.get("seconds", 0)))
    return {"slept": args.get("seconds", 0)}
'''

SLOW_SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: slow-demo}
spec:
  provider: local
  users: [{name: alice}]
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {name: default}
spec: {host: 127.0.0.1, port: 8789, busy_timeout: 1s, request_timeout: 2s, max_request_size: 1MB}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: waits}
spec:
  collaborators: {alice: owner}
---
apiVersion: cmlplan/v1
kind: Model
metadata: {name: slow, project: waits}
spec:
  source: {file: slow.py, function: slow}
  authentication: false
  deployment: {replicas: 1, cpu: 1, memory: 256Mi}
"""


@pytest.fixture(scope="module")
def slow_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorkspace]:
    """A one-replica model that sleeps as long as asked; proxy busy_timeout 1s, request_timeout 2s."""
    source = tmp_path_factory.mktemp("e2e-src") / "slow"
    source.mkdir()
    (source / "slow.py").write_text(SLOW_MODEL)
    (source / "cmlplan.yaml").write_text(SLOW_SPEC)
    with live_workspace(source, tmp_path_factory.mktemp("e2e") / "slow") as ws:
        ws.apply()
        yield ws
