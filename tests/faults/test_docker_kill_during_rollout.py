"""cmlplan SIGKILLed at each step of a code-change rollout on the docker provider, then
force-unlock and one apply converge: the model answers, the containers are what state records (no
orphan), and the next plan shows no changes. Destroy after such a kill leaves no container or
network of the workspace. (The local provider's twin is test_kill_during_rollout.py.)
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from faultkit import kill_group, run_until_line

pytestmark = [pytest.mark.slow, pytest.mark.docker]

DOCKER_TESTS = Path(__file__).resolve().parents[1] / "providers" / "docker"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dockerws = _load("dockerws", DOCKER_TESTS / "dockerws.py")
docker_engine = _load("cmlplan_docker_e2e_fixtures", DOCKER_TESTS / "conftest.py").docker_engine  # fixture

ROLLOUT_STEPS = [
    ("started", r"^deployment\.numbers/add: starting replica 2 "),
    ("verified", r"^deployment\.numbers/add: replica add-2-\d-numbers answered"),
    ("routed", r"^deployment\.numbers/add: the proxy routes to \d+ replicas?"),
    ("draining", r"^deployment\.numbers/add: draining and stopping"),
]


@pytest.fixture
def numbers(docker_engine: str, tmp_path: Path) -> Iterator[Any]:
    with dockerws.docker_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers", "kill") as ws:
        ws.apply()
        yield ws


def _kill_mid_rollout(ws: Any, pattern: str) -> None:
    source = ws.dir / "add.py"
    source.write_text(source.read_text() + "\n# v2\n")
    process, lines = run_until_line(ws.dir, ws.dir.parent / "resume", pattern, "apply", "-auto-approve", timeout=600)
    kill_group(process)
    assert process.returncode == -9, lines
    lock = json.loads((ws.dir / ".cmlplan" / "state.lock").read_text())
    ws.cli("force-unlock", lock["id"])


def _replicas(ws: Any) -> set[str]:
    return {n for n in ws.containers() if "-proxy-" not in n}


@pytest.mark.parametrize("pattern", [p for _, p in ROLLOUT_STEPS], ids=[i for i, _ in ROLLOUT_STEPS])
def test_on_docker_kill_at_each_rollout_step_then_one_apply_converges(numbers: Any, pattern: str) -> None:
    _kill_mid_rollout(numbers, pattern)
    numbers.apply()
    assert numbers.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    recorded = {p["name"] for p in numbers.state_show("deployment.numbers/add")["attributes"]["processes"]}
    assert len(recorded) == 2 and all("-d3-" in n for n in recorded), recorded
    assert _replicas(numbers) == recorded, "containers that no state records are still there"
    status, body = numbers.call("model.numbers/add", {"a": 2, "b": 40})
    assert (status, body.get("response")) == (200, {"result": 42})


@pytest.mark.parametrize("pattern", [ROLLOUT_STEPS[0][1], ROLLOUT_STEPS[2][1]], ids=["started", "routed"])
def test_destroy_after_a_killed_rollout_leaves_no_container_or_network(numbers: Any, pattern: str) -> None:
    _kill_mid_rollout(numbers, pattern)
    numbers.cli("destroy", "-auto-approve")
    left = numbers.leftovers()
    assert left["containers"] == [] and left["networks"] == [], left
