"""A real MLflow server for the registry tests, run by cmlplan itself.

``registry_ws`` (session-scoped, shared) is a private copy of examples/iris-mlflow on free ports,
with OpenLineage events written to a file. It applies ``-target registry.main`` (cmlplan starts
``mlflow server`` under the workspace's supervisord), then runs the example's fit.py, which
registers IrisPetalWidth version 1 with the alias champion. Teardown destroys the workspace and
shuts its supervisord down, so no process outlives the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmlplan.providers.local.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "iris-mlflow"
BIN = REPO / ".venv" / "bin"
TIMEOUT = 1200.0  # the first build installs the model's requirements (mlflow among them)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RegistryWorkspace:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.spec = directory / "cmlplan.yaml"
        self.proxy_port, self.registry_port = free_port(), free_port()
        self.uri = f"http://127.0.0.1:{self.registry_port}"
        self.runs: dict[int, str] = {}  # registered version -> MLflow run id, as fit.py printed them
        text = self.spec.read_text().replace("port: 8788", f"port: {self.proxy_port}")
        text = text.replace("port: 5000", f"port: {self.registry_port}")
        text = text.replace("users: [{name: alice}]", "users: [{name: alice}]\n  openlineage: {file: lineage.jsonl}")
        self.spec.write_text(text)

    def edit(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text, old
        self.spec.write_text(text.replace(old, new, 1))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "cmlplan"), *args], cwd=self.dir, env={**os.environ, "NO_COLOR": "1", "CMLPLAN_USER": "alice"},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"cmlplan {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def fit(self, *args: str) -> int:
        """Run fit.py against the registry; returns the version it registered."""
        out = subprocess.run(
            [str(BIN / "python"), "fit.py", "--tracking-uri", self.uri, *args], cwd=self.dir,
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
        found = re.search(r"run ([0-9a-f]{32}): IrisPetalWidth version (\d+)", out)
        assert found, out
        self.runs[int(found.group(2))] = found.group(1)
        return int(found.group(2))

    def call(self, request: Any) -> tuple[int, dict[str, Any]]:
        keys = self.dir / ".cmlplan" / "keys"
        body = {"accessKey": (keys / "model.iris_petal-width").read_text().strip(), "request": request}
        api_key = (keys / "apikey.alice-ci").read_text().strip()
        http = urllib.request.Request(
            f"http://127.0.0.1:{self.proxy_port}/model", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        )
        try:
            with urllib.request.urlopen(http, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.dir / ".cmlplan" / "supervisor")

    def registry_pid(self) -> int:
        program = next(p for p in self.supervisor.programs("mlflow.") if p.name == "mlflow.main")
        assert program.pid, program
        return program.pid

    def teardown(self) -> None:
        try:
            if (self.dir / ".cmlplan" / "state.json").exists():
                self.cli("destroy", "-auto-approve", check=False)
        finally:
            with contextlib.suppress(Exception):
                self.supervisor.shutdown(timeout=60)


@pytest.fixture(scope="session")
def registry_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryWorkspace]:
    target = tmp_path_factory.mktemp("registry") / "iris-mlflow"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "mlruns"))
    workspace = RegistryWorkspace(target)
    try:
        workspace.cli("apply", "-auto-approve", "-target", "registry.main")
        workspace.fit()
        yield workspace
    finally:
        workspace.teardown()
