"""deployment.gpus and deployment.autoscale per provider: local refuses both at plan time in one
line, docker turns GPUs into device requests and refuses autoscaling, kubernetes takes both."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cmlplan.providers.docker.runtime import gpu_requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from test_commands import cmlplan  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def workspace(tmp_path: Path, provider: str, deployment: str) -> Path:
    directory = tmp_path / "add-numbers"
    shutil.copytree(EXAMPLES / "add-numbers", directory, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__"))
    spec = directory / "cmlplan.yaml"
    text = spec.read_text().replace("provider: local", f"provider: {provider}")
    spec.write_text(text.replace("deployment: {replicas: 2,", f"deployment: {{{deployment}, replicas: 2,"))
    return directory


@pytest.mark.parametrize(
    ("provider", "deployment", "message"),
    [
        ("local", "gpus: 1", "deployment.numbers/add: deployment.gpus 1 needs the docker or kubernetes provider"),
        ("local", "autoscale: {max: 3, cpu: 60}", "deployment.numbers/add: deployment.autoscale needs the kubernetes provider"),
        ("docker", "autoscale: {max: 3, cpu: 60}", "deployment.numbers/add: deployment.autoscale needs the kubernetes provider"),
    ],
)
def test_refused_at_plan_time_in_one_line(tmp_path: Path, provider: str, deployment: str, message: str) -> None:
    outcome = cmlplan("plan", "-C", str(workspace(tmp_path, provider, deployment)))
    assert outcome.code != 0
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], outcome.err
    assert "Traceback" not in outcome.out + outcome.err


@pytest.mark.parametrize("provider", ["docker", "kubernetes"])
def test_gpus_plan_on_docker_and_kubernetes(tmp_path: Path, provider: str) -> None:
    outcome = cmlplan("plan", "-C", str(workspace(tmp_path, provider, "gpus: 2")))
    assert outcome.code == 0, outcome.err
    assert "gpus" in outcome.out and "= 2" in outcome.out


def test_autoscale_needs_one_target(tmp_path: Path) -> None:
    outcome = cmlplan("plan", "-C", str(workspace(tmp_path, "kubernetes", "autoscale: {max: 3}")))
    assert outcome.code != 0
    assert "give one target: target_in_flight or cpu" in outcome.err


def test_docker_device_requests() -> None:
    assert gpu_requests(0) is None
    (request,) = gpu_requests(2) or []
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]] and request["Driver"] == "nvidia"
