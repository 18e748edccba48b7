"""Plans that cannot reach a registry fail in one line, before anything runs (no server needed)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: w}
spec: {users: [{name: alice}]}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: p}
spec: {collaborators: {alice: owner}}
---
apiVersion: cmlplan/v1
kind: ModelRegistry
metadata: {name: main}
spec: REGISTRY
---
apiVersion: cmlplan/v1
kind: Model
metadata: {name: m, project: p}
spec:
  source: {registered: {registry: main, name: M, alias: champion}}
"""


def _plan(folder: Path, registry: str, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "cmlplan.yaml").write_text(SPEC.replace("REGISTRY", registry))
    return subprocess.run(
        [str(BIN / "cmlplan"), "plan", *args], cwd=folder, env={**os.environ, "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=120, check=False,
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_managed_registry_not_applied_yet_blocks_only_its_models(tmp_path: Path) -> None:
    result = _plan(tmp_path, "{port: 5000}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: cmlplan.yaml:16:1: model.p/m: registry.main is not running yet; apply it first"
        " (cmlplan apply -target registry.main), register the model, then plan again"
    ]
    targeted = _plan(tmp_path, "{port: 5000}", "-target", "registry.main")
    assert targeted.returncode == 0, targeted.stderr
    assert "+ registry.main" in targeted.stdout and "model.p/m" not in targeted.stdout
    assert not (tmp_path / ".cmlplan" / "state.json").exists()


def test_an_external_registry_that_does_not_answer_fails_the_plan_in_one_line(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    result = _plan(tmp_path, f"{{uri: '{uri}'}}")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cmlplan.yaml:") and f"at {uri} does not answer" in line, line
    assert "Traceback" not in result.stderr


def test_a_plan_targeted_elsewhere_never_asks_the_registry(tmp_path: Path) -> None:
    with socket.socket() as listener:  # a "registry" that notes every connection and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        targeted = _plan(tmp_path, f"{{uri: '{uri}'}}", "-target", "project.p")
        assert targeted.returncode == 0, targeted.stderr
        assert "+ project.p" in targeted.stdout and "registry.main" not in targeted.stdout
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            connection = None
        assert connection is None, "the plan connected to the registry although nothing planned needs it"


def test_kubernetes_refuses_a_managed_registry_and_registered_sources_in_one_line(tmp_path: Path) -> None:
    spec = SPEC.replace("spec: {users: [{name: alice}]}", "spec: {provider: kubernetes, users: [{name: alice}]}")
    (tmp_path / "cmlplan.yaml").write_text(spec.replace("REGISTRY", "{port: 5000}"))

    def plan(*args: str) -> list[str]:
        result = subprocess.run(
            [str(BIN / "cmlplan"), "plan", *args], cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 1
        return result.stderr.strip().splitlines()

    assert plan() == [
        "Error: cmlplan.yaml:16:1: model.p/m: serving a registered model version is not supported yet by"
        " provider 'kubernetes' (supported by: docker, local)"
    ]
    assert plan("-target", "registry.main") == [
        "Error: registry.main: ModelRegistry is not supported by provider 'kubernetes' (it manages: build,"
        " deployment, proxy); run mlflow server elsewhere and give the registry its uri: instead"
    ]
