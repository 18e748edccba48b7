"""Registered MLflow models end to end on the local provider, against a real mlflow server that
cmlplan runs: register, deploy, call, upgrade by alias (zero downtime), roll back by version pin;
a missing version or a registry that does not answer fails the plan in one line and leaves the
running deployment alone; lineage, history, models and OpenLineage events carry the real run ids.

The tests share one workspace (``registry_ws``) and run in file order.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading

import pytest

pytestmark = pytest.mark.slow

MODEL = "model.iris/petal-width"


def _prediction(ws, request=None) -> float:  # type: ignore[no-untyped-def]
    status, body = ws.call(request if request is not None else {"petal_length": 5.4})
    assert status == 200 and body["success"], body
    return float(body["response"][0])


def test_a_managed_registry_is_a_supervised_mlflow_server(registry_ws) -> None:  # type: ignore[no-untyped-def]
    state = registry_ws.json("state", "show", "registry.main")
    assert state["attributes"]["uri"] == registry_ws.uri
    assert state["attributes"]["processes"][0]["name"] == "mlflow.main"
    assert (registry_ws.dir / ".cmlplan" / "registry" / "main" / "mlflow.db").is_file()
    assert registry_ws.cli("output", "-raw", "registry.main").stdout.strip() == registry_ws.uri
    assert f"MLFLOW_TRACKING_URI={registry_ws.uri}" in registry_ws.cli("output").stdout


def test_deploy_the_alias_and_call_it_in_every_documented_shape(registry_ws) -> None:  # type: ignore[no-untyped-def]
    plan = registry_ws.cli("plan").stdout
    assert "serves registered IrisPetalWidth version 1" in plan and registry_ws.runs[1] in plan
    registry_ws.cli("apply", "-auto-approve")
    one = _prediction(registry_ws)
    assert 1.0 < one < 3.0
    status, records = registry_ws.call([{"petal_length": 1.4}, {"petal_length": 5.4}])
    assert status == 200 and len(records["response"]) == 2 and records["response"][1] == pytest.approx(one)
    status, split = registry_ws.call({"columns": ["petal_length"], "data": [[5.4]]})
    assert status == 200 and split["response"] == [pytest.approx(one)]
    status, bad = registry_ws.call({"sepal_width": 3.0})
    assert status == 500 and "model.exception" in bad["errors"]


def test_moving_the_alias_is_a_planned_replace_served_without_downtime(registry_ws) -> None:  # type: ignore[no-untyped-def]
    before = _prediction(registry_ws)
    assert registry_ws.fit("--alpha", "25") == 2
    plan = registry_ws.cli("plan").stdout
    assert "registered IrisPetalWidth version 1 -> 2 (alias champion moved)" in plan
    assert registry_ws.runs[2] in plan
    changes = {c["address"]: c["action"] for c in registry_ws.json("plan")["resource_changes"]}
    assert changes["deployment.iris/petal-width"] in ("replace", "create-then-delete", "create_then_delete")
    assert changes["build.iris/petal-width#2"] == "create"

    failures: list[object] = []
    done = threading.Event()

    def keep_calling() -> None:
        while not done.is_set():
            status, body = registry_ws.call({"petal_length": 5.4})
            if status != 200:
                failures.append(body)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        registry_ws.cli("apply", "-auto-approve")
    finally:
        done.set()
        caller.join()
    assert failures == []
    assert _prediction(registry_ws) != pytest.approx(before)


def test_pinning_a_version_rolls_back_to_its_existing_build(registry_ws) -> None:  # type: ignore[no-untyped-def]
    registry_ws.edit("alias: champion}", "version: 1}")
    plan = registry_ws.cli("plan").stdout
    assert "version 2 -> 1 (pinned to version 1)" in plan
    assert "build.iris/petal-width#3" not in plan  # version 1's build is reused, not rebuilt
    registry_ws.cli("apply", "-auto-approve")
    assert registry_ws.json("state", "show", "deployment.iris/petal-width")["attributes"]["build"] == 1
    assert registry_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_a_missing_version_fails_the_plan_in_one_line_and_touches_nothing(registry_ws) -> None:  # type: ignore[no-untyped-def]
    serving = _prediction(registry_ws)
    registry_ws.edit("version: 1}", "version: 9}")
    try:
        result = registry_ws.cli("plan", check=False)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert re.fullmatch(
            rf"Error: cmlplan\.yaml:\d+:\d+: {MODEL}: registered model 'IrisPetalWidth' has no version 9 \(versions: 1, 2\)",
            line,
        ), line
        assert registry_ws.cli("apply", "-auto-approve", check=False).returncode == 1
    finally:
        registry_ws.edit("version: 9}", "version: 1}")
    assert _prediction(registry_ws) == pytest.approx(serving)


def test_a_registry_that_does_not_answer_fails_the_plan_and_the_model_keeps_serving(registry_ws) -> None:  # type: ignore[no-untyped-def]
    serving = _prediction(registry_ws)
    group = os.getpgid(registry_ws.registry_pid())
    os.killpg(group, signal.SIGSTOP)  # the server and its uvicorn worker: up, but not answering
    try:
        result = registry_ws.cli("plan", check=False)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"registry main at {registry_ws.uri} does not answer" in lines[0], result.stderr
        assert _prediction(registry_ws) == pytest.approx(serving)
    finally:
        os.killpg(group, signal.SIGCONT)
    assert registry_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_lineage_carries_the_real_run_and_data_set(registry_ws) -> None:  # type: ignore[no-untyped-def]
    graph = registry_ws.json("lineage", MODEL)
    nodes = {n["id"]: n for n in graph["nodes"]}
    run = nodes[f"run:{registry_ws.runs[1]}"]
    assert set(run["metrics"]) == {"mse", "r2"} and run["params"]["alpha"] == "1.0"
    kinds = [n["kind"] for n in graph["nodes"]]
    assert kinds == ["dataset", "run", "registered_version", "build", "deployment", "route"]
    assert {"from": f"run:{registry_ws.runs[1]}", "to": "version:IrisPetalWidth/1"} in graph["edges"]
    text = registry_ws.cli("lineage").stdout
    assert registry_ws.runs[1] in text and "deployment 3" in text
    assert registry_ws.cli("lineage", MODEL, "-format", "dot").stdout.startswith("digraph lineage {")


def test_history_and_models_show_each_deployment(registry_ws) -> None:  # type: ignore[no-untyped-def]
    rows = registry_ws.json("history", MODEL)["history"]
    deployments = [r for r in rows if r["address"] == "deployment.iris/petal-width"]
    assert [(r["deployment_id"], r["build"], r["registered"]["version"]) for r in deployments] == [
        (1, 1, 1), (2, 2, 2), (3, 1, 1)
    ]
    assert all(r["stopped_at"] for r in deployments[:2]) and deployments[2]["stopped_at"] is None
    assert {r["by"].split("@")[0] for r in rows} == {"alice"}
    assert "build" in deployments[1]["changed"] and "registered.version" in deployments[1]["changed"]
    (model,) = registry_ws.json("models")["models"]
    assert model["source"] == "registered IrisPetalWidth v1 in main"
    assert (model["build"], model["deployment_id"], model["status"]) == (1, 3, "running")
    assert model["replicas"] == {"running": 2, "wanted": 2} and model["applied_by"].startswith("alice@")
    assert "iris/petal-width" in registry_ws.cli("models").stdout


def test_openlineage_events_name_the_registered_version_and_its_run(registry_ws) -> None:  # type: ignore[no-untyped-def]
    events = [json.loads(line) for line in (registry_ws.dir / "lineage.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events[:2]] == ["START", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == len(events) // 2
    inputs = {i["name"] for e in events for i in e.get("inputs", [])}
    assert f"runs/{registry_ws.runs[2]}" in inputs and "models/IrisPetalWidth/2" in inputs
    outputs = {o["name"] for e in events for o in e.get("outputs", [])}
    assert "deployment.iris/petal-width" in outputs
