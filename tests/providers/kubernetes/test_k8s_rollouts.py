"""Rollouts on the fake API: progress, and failures that must leave the old pods serving with the
reason spelled out (image pull errors, OOMKilled, unschedulable, deadline, timeout, examples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeapi import FakeKubernetes
from test_k8s_provider import DEPLOYMENT, MODEL_OBJECT, actions, apply, run

from cmlplan.providers.kubernetes.rollouts import pod_problems, rollout_status


def build_label(cluster: FakeKubernetes) -> str:
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None
    return deployment["spec"]["template"]["metadata"]["labels"]["cmlplan.dev/build"]


def new_build(directory: Path) -> None:
    path = directory / "add.py"
    path.write_text(path.read_text() + "\n# a change that makes build 2\n")


def recorded_build(directory: Path) -> int:
    state = json.loads((directory / ".cmlplan" / "state.json").read_text())
    return int(state["resources"][DEPLOYMENT]["attributes"]["build"])


def test_progress_is_shown_while_pods_come_up(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    cluster.mode[MODEL_OBJECT] = "slow"
    output = apply(k8s_ws)
    assert "rollout: 0 of 2 replicas updated" in output
    assert "rollout: 1 of 2 replicas updated" in output
    assert "rollout: 2 of 2 replicas available" in output
    assert "the new replicas answered 1 example(s)" in output


def test_a_new_build_updates_in_place(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    new_build(k8s_ws)
    assert actions(k8s_ws) == {"build.numbers/add#2": "create", DEPLOYMENT: "update"}
    apply(k8s_ws)
    assert build_label(cluster) == "2"
    assert recorded_build(k8s_ws) == 2


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("stuck:ImagePullBackOff", ["ImagePullBackOff", "Failed to pull image", "cannot finish"]),
        ("oom", ["OOMKilled", "CrashLoopBackOff", "Back-off restarting failed container"]),
        ("deadline", ["ProgressDeadlineExceeded", "has timed out progressing"]),
    ],
)
def test_a_stuck_rollout_fails_with_its_reason_and_rolls_back(
    k8s_ws: Path, cluster: FakeKubernetes, mode: str, expected: list[str]
) -> None:
    apply(k8s_ws)
    new_build(k8s_ws)
    cluster.mode[MODEL_OBJECT] = mode
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    for text in expected:
        assert text in output, (text, output)
    assert "the previous objects (build 1) are applied again and keep serving" in output
    assert "Traceback" not in output
    assert build_label(cluster) == "1", "the previous template is back"
    assert recorded_build(k8s_ws) == 1
    assert actions(k8s_ws) == {DEPLOYMENT: "update"}, "the next apply tries build 2 again"


def test_an_unschedulable_rollout_times_out_with_the_scheduler_message(
    k8s_ws: Path, cluster: FakeKubernetes, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(k8s_ws)
    new_build(k8s_ws)
    cluster.mode[MODEL_OBJECT] = "unschedulable"
    monkeypatch.setenv("CMLPLAN_ROLLOUT_TIMEOUT", "0.5")
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "did not finish within 0.5s" in output
    assert "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in output
    assert build_label(cluster) == "1"


def test_a_failing_example_rolls_back(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    new_build(k8s_ws)
    cluster.service_handler = lambda _s, _p, body: (200, {"success": True, "response": {"result": 0}})
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "expected {'result': 8}" in output or 'expected {"result": 8}' in output, output
    assert build_label(cluster) == "1"


def test_a_failed_first_rollout_leaves_no_objects(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    cluster.mode[MODEL_OBJECT] = "stuck:ImagePullBackOff"
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "its objects were removed" in output
    assert cluster.get("Deployment", MODEL_OBJECT, "ml") is None
    assert cluster.get("Service", MODEL_OBJECT, "ml") is None


# -- the rollout logic alone ------------------------------------------------------------------------


def _deployment(wanted: int, status: dict) -> dict:
    return {"metadata": {"name": "d", "generation": 2}, "spec": {"replicas": wanted}, "status": status}


@pytest.mark.parametrize(
    ("status", "done", "message"),
    [
        (dict(observedGeneration=1, updatedReplicas=3, replicas=3, availableReplicas=3), False, "waiting for the controller"),
        (dict(observedGeneration=2, updatedReplicas=1, replicas=4, availableReplicas=3), False, "1 of 3 replicas updated"),
        (dict(observedGeneration=2, updatedReplicas=3, replicas=4, availableReplicas=3), False, "1 old replica(s)"),
        (dict(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=2), False, "2 of 3 updated replicas available"),
        (dict(observedGeneration=2, updatedReplicas=3, replicas=3, availableReplicas=3), True, "3 of 3 replicas available"),
    ],
)
def test_rollout_status(status: dict, done: bool, message: str) -> None:
    found = rollout_status(_deployment(3, status), generation=2)
    assert found.done is done and message in found.message


def test_pod_problems_name_the_fatal_ones() -> None:
    pods = [
        {"metadata": {"name": "a"}, "status": {"containerStatuses": [{"ready": True, "state": {"running": {}}}]}},
        {"metadata": {"name": "b"}, "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}},
        {"metadata": {"name": "c", "deletionTimestamp": "x"}, "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}},
    ]
    problems, fatal = pod_problems(pods)
    assert problems == ["pod b: ContainerCreating"] and not fatal
    pods[1]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = "ErrImageNeverPull"
    assert pod_problems(pods)[1]


def test_a_proxy_that_cannot_roll_to_new_routes_fails_the_apply_and_keeps_the_old_routes(
    k8s_ws: Path, cluster: FakeKubernetes
) -> None:
    from test_k8s_provider import PROXY_OBJECT, routes

    apply(k8s_ws)
    before = routes(cluster)
    spec = k8s_ws / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("deployment: {replicas: 2,", "deployment: {stopped: true, replicas: 2,"))
    cluster.mode[PROXY_OBJECT] = "stuck:CrashLoopBackOff"
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "proxy reload of Deployment/cmlplan-add-numbers-demo-proxy cannot finish" in output, output
    assert "the running ones keep serving" in output
    after = routes(cluster)
    assert {k: v for k, v in after.items() if k != "generation"} == {k: v for k, v in before.items() if k != "generation"}
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None and deployment["spec"]["replicas"] == 2, "the model was not stopped"
