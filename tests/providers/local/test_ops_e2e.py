"""End to end on the local provider: CML's cdsw-build.sh, and a request_timeout change in place.

One add-numbers workspace for the module (2 replicas, no authentication); tests run in file order.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixtures' type, from this folder's localws.py
    from localws import LiveWorkspace

pytestmark = pytest.mark.slow

ADD = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
SCRIPT = "echo built by cdsw-build > built.txt\n"


def test_cdsw_build_sh_at_the_root_runs_and_editing_it_rebuilds(numbers_ws: LiveWorkspace) -> None:
    script = numbers_ws.dir / "cdsw-build.sh"
    script.write_text(SCRIPT)
    plan = numbers_ws.cli("plan").stdout
    assert "build.numbers/add#2" in plan and "runs build script cdsw-build.sh (sha256 " in plan, plan
    numbers_ws.apply()
    build = numbers_ws.state_show("build.numbers/add#2")["attributes"]
    assert build["build_script"] == "cdsw-build.sh"
    assert (Path(build["path"]) / "src" / "built.txt").read_text() == "built by cdsw-build\n"
    status, body = numbers_ws.call(ADD, {"a": 1, "b": 2})
    assert (status, body["response"]) == (200, {"result": 3})

    script.write_text(SCRIPT.replace("built by", "rebuilt by"))  # an edit is a rebuild
    plan = numbers_ws.cli("plan").stdout
    assert "build.numbers/add#3" in plan and "~cdsw-build.sh" in plan, plan

    numbers_ws.replace_in_spec("authentication: false", "authentication: false\n  build: {script: none}")
    plan = numbers_ws.cli("plan").stdout
    assert "runs build script" not in plan, plan
    numbers_ws.apply()
    build = numbers_ws.state_show("build.numbers/add#3")["attributes"]
    assert build["build_script"] is None
    assert not (Path(build["path"]) / "src" / "built.txt").exists()  # the script did not run


def test_request_timeout_change_restarts_replicas_in_place_without_a_failed_request(
    numbers_ws: LiveWorkspace,
) -> None:
    before = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    key = numbers_ws.key(ADD)
    results: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = numbers_ws.post({"accessKey": key, "request": {"a": 1, "b": 1}}, timeout=10)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            results.append(status)
            if status != 200:
                failures.append(json.dumps(body))

    numbers_ws.replace_in_spec("request_timeout: 30s", "request_timeout: 45s")
    plan = numbers_ws.plan_json()
    actions = {c["address"]: c["action"] for c in plan["resource_changes"] if c["action"] != "no-op"}
    assert actions == {"proxy.default": "update", DEPLOYMENT: "update"}, actions
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        result = numbers_ws.apply()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(15)
    assert "restarting 2 replica(s) one at a time" in result.stdout, result.stdout
    assert len(results) > 20, len(results)
    assert not failures, failures[:5]
    after = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    assert (after["deployment_id"], after["build"]) == (before["deployment_id"], before["build"])
    assert after["request_timeout"] == 45
    old_names = {p["name"] for p in before["processes"]}
    new_names = {p["name"] for p in after["processes"]}
    assert len(new_names) == 2 and not old_names & new_names  # every replica was restarted
    running = {p.name for p in numbers_ws.programs("r.numbers.add.")}
    assert running == new_names
    confs = [(numbers_ws.dir / ".cmlplan" / "supervisor" / "programs").glob(f"{n}*") for n in new_names]
    texts = [path.read_text() for paths in confs for path in paths]
    assert len(texts) == 2 and all("--prediction-timeout 50" in t for t in texts), texts
    routes = json.loads((numbers_ws.dir / ".cmlplan" / "run" / "routes.json").read_text())
    assert routes["proxy"]["request_timeout"] == 45
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_logs_show_the_build_and_every_replica_also_restarted_ones(numbers_ws: LiveWorkspace) -> None:
    after = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    result = numbers_ws.cli("logs", ADD, "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    sources = {line["source"] for line in lines}
    assert f"build {after['build']}" in sources, sources
    replica_files = {s.split("(")[1].rstrip(")") for s in sources if s.startswith("replica ")}
    assert {p["name"] for p in after["processes"]} < replica_files  # the restarted ones' logs survive
    one = numbers_ws.cli("logs", ADD, "--replica", "1").stdout
    assert one and all(line.startswith("replica 1 (") for line in one.splitlines()), one
    proxy = numbers_ws.cli("logs", "proxy.default").stdout
    assert proxy and all(line.startswith("proxy (cmlplan-proxy-") for line in proxy.splitlines())
    bad = numbers_ws.cli("logs", ADD, "--since", "soon", check=False)
    assert bad.returncode == 1 and "--since 'soon'" in bad.stderr and "Traceback" not in bad.stderr
    wrong = numbers_ws.cli("logs", "project.numbers", check=False)
    assert wrong.returncode == 1 and "logs are kept for models" in wrong.stderr


def test_restart_rolls_every_replica_with_no_failed_request(numbers_ws: LiveWorkspace) -> None:
    before = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    key = numbers_ws.key(ADD)
    results: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = numbers_ws.post({"accessKey": key, "request": {"a": 2, "b": 3}}, timeout=10)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            results.append(status)
            if status != 200:
                failures.append(json.dumps(body))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        result = numbers_ws.cli("restart", ADD)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(15)
    assert "Restart complete: 2 replica(s)" in result.stdout, result.stdout
    assert len(results) > 20 and not failures, (len(results), failures[:5])
    after = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    assert (after["deployment_id"], after["build"]) == (before["deployment_id"], before["build"])
    assert not {p["name"] for p in before["processes"]} & {p["name"] for p in after["processes"]}
    assert {p.name for p in numbers_ws.programs("r.numbers.add.")} == {p["name"] for p in after["processes"]}
    history = json.loads(numbers_ws.cli("history", ADD, "--json").stdout)
    assert "restart" in json.dumps(history), history
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    pending = numbers_ws.spec.read_text()
    numbers_ws.replace_in_spec("replicas: 2", "replicas: 3")
    refused = numbers_ws.cli("restart", ADD, check=False)
    numbers_ws.set_spec(pending)
    assert refused.returncode == 1 and "changes are pending" in refused.stderr, refused.stderr
