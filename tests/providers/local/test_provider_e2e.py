"""End to end: the ``cmlplan`` CLI with the real local provider (supervisord, replicas, proxy).

Each workspace is applied once per module and shared by its tests, which run in file order; the
last test of each workspace checks that no plaintext key leaked into files, CLI output or ``ps``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures' type, from this folder's localws.py
    from localws import LiveWorkspace

pytestmark = pytest.mark.slow

IRIS = "model.iris/petal-width"
ADD = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
ADD_DEPLOYMENT_LINE = "deployment: {replicas: 2, cpu: 1, memory: 512Mi, env: {}}"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
    return value


def _assert_no_leak(ws: LiveWorkspace) -> None:
    ws.collect_keys()
    secrets = {s.encode() for s in ws.secrets}
    assert secrets, "no key was ever read: the check would prove nothing"
    keys_dir = ws.dir / ".cmlplan" / "keys"
    hits: list[str] = []
    scanned = 0
    for path in (ws.dir / ".cmlplan").rglob("*"):
        if path.is_symlink() or not path.is_file() or keys_dir in path.parents:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        hits += [f"{path}" for secret in secrets if secret in data]
    assert scanned > 10
    for required in ("state.json", "run/routes.json", "supervisor/supervisord.log"):
        assert (ws.dir / ".cmlplan" / required).is_file(), required
    for folder in ("supervisor/programs", "logs"):  # program confs hold the env; logs hold output
        assert list((ws.dir / ".cmlplan" / folder).iterdir()), folder
    assert not hits, f"plaintext keys found in {hits}"
    for output in ws.outputs:
        for secret in ws.secrets:
            assert secret not in output, "a plaintext key was printed to a non-terminal"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    for secret in ws.secrets:
        assert secret not in processes, "a plaintext key is on a command line"


# -- iris: authentication, limits, replicas ------------------------------------------------------


def test_iris_call_through_the_cli(iris_ws: LiveWorkspace) -> None:
    result = iris_ws.cli("call", IRIS, "--input", '{"petal_length": 5.4}')
    assert "status:   200" in result.stdout
    assert "petal_width" in result.stdout


def test_iris_output_curl_works_when_pasted(iris_ws: LiveWorkspace) -> None:
    """Every line `cmlplan output` prints under the model, run in a shell as a user pastes them."""
    printed = iris_ws.cli("output", IRIS).stdout
    lines = [line.strip() for line in printed.splitlines()[1:] if line.strip()]
    assert any(line.startswith("API_KEY=$(cat ") and "apikey.alice-ci" in line for line in lines), printed
    script = "\n".join(line for line in lines if line.startswith(("ACCESS_KEY=", "API_KEY=", "curl ")))
    done = subprocess.run(["bash", "-euc", script], cwd=iris_ws.dir, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["success"] is True, done.stdout


def test_iris_proxy_answers_and_refuses(iris_ws: LiveWorkspace) -> None:
    alice = iris_ws.key("apikey.alice-ci")
    access = iris_ws.key(IRIS)

    status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=alice)
    assert status == 200 and body["success"] is True
    assert isinstance(body["response"]["petal_width"], float)
    assert body["ReplicaID"] and body["uuid"]

    status, body = iris_ws.call(IRIS, {"petal_length": 5.4})
    assert (status, list(body["errors"])) == (401, ["auth.missing"])
    status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key="not-a-key")
    assert (status, list(body["errors"])) == (401, ["auth.invalid"])
    status, body = iris_ws.post({"accessKey": "no-such-model-key", "request": {}}, api_key=alice)
    assert (status, list(body["errors"])) == (404, ["model.not_found"])
    status, body = iris_ws.post(None, raw=b'{"accessKey": ', api_key=alice)
    assert (status, list(body["errors"])) == (400, ["request.invalid"])
    big = {"accessKey": access, "request": {"petal_length": 5.4, "pad": "x" * 2000}}
    status, body = iris_ws.post(big, api_key=alice)
    assert (status, list(body["errors"])) == (413, ["request.too_large"])


def test_iris_three_replicas_share_the_calls(iris_ws: LiveWorkspace) -> None:
    alice = iris_ws.key("apikey.alice-ci")
    seen, uuids = set(), set()
    for _ in range(12):
        status, body = iris_ws.call(IRIS, {"petal_length": 4.0}, api_key=alice)
        assert status == 200, body
        seen.add(body["ReplicaID"])
        uuids.add(body["uuid"])
    assert len(seen) == 3, seen
    assert len(uuids) == 12


def test_iris_expired_key_is_forbidden(iris_ws: LiveWorkspace) -> None:
    old = iris_ws.key("apikey.alice-old")
    status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=old)
    assert (status, list(body["errors"])) == (403, ["auth.expired"])


def test_iris_key_of_a_non_collaborator_is_forbidden_then_revoked(iris_ws: LiveWorkspace) -> None:
    before = iris_ws.spec.read_text()
    iris_ws.replace_in_spec("users: [{name: alice}, {name: bob}]", "users: [{name: alice}, {name: bob}, {name: carol}]")
    carol_doc = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: carol-ci}\nspec: {user: carol, expires_in: 1d}\n"
    iris_ws.set_spec(iris_ws.spec.read_text() + carol_doc)
    iris_ws.apply()
    carol = iris_ws.key("apikey.carol-ci")
    status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=carol)
    assert (status, list(body["errors"])) == (403, ["auth.forbidden"])
    assert "carol" in body["errors"]["auth.forbidden"]

    # revoke: the ApiKey document goes, the key stops working at once
    iris_ws.set_spec(iris_ws.spec.read_text().replace(carol_doc, ""))
    iris_ws.apply()
    status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=carol)
    assert (status, list(body["errors"])) == (401, ["auth.invalid"])
    iris_ws.set_spec(before)
    iris_ws.apply()
    status, _ = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=iris_ws.key("apikey.alice-ci"))
    assert status == 200


def test_iris_no_secret_leaks(iris_ws: LiveWorkspace) -> None:
    _assert_no_leak(iris_ws)


# -- add-numbers: model errors, crashes, drift, rollouts -----------------------------------------


def test_numbers_model_exception_then_success(numbers_ws: LiveWorkspace) -> None:
    status, body = numbers_ws.call(ADD, {"a": "x"})
    assert status == 500
    assert body["success"] is False and "ValueError" in body["errors"]["model.exception"]
    status, body = numbers_ws.call(ADD, {"a": 3, "b": 5})
    assert (status, body["response"]) == (200, {"result": 8})


def test_numbers_killed_replica_comes_back(numbers_ws: LiveWorkspace) -> None:
    processes = numbers_ws.state_show(DEPLOYMENT)["attributes"]["processes"]
    victim = processes[0]
    os.kill(int(victim["pid"]), signal.SIGKILL)

    def restarted() -> bool:
        state, pid = numbers_ws.programs_via_subprocess().get(victim["name"], ("GONE", None))
        return state == "RUNNING" and pid not in (None, victim["pid"])

    plan = numbers_ws.plan_json()
    # while it is down the plan says so; on a loaded machine supervisord may have restarted it already
    assert DEPLOYMENT in [d["address"] for d in plan["resource_drift"]] or restarted(), plan["resource_drift"]
    wait_for(restarted, timeout=60, what=f"supervisord to restart {victim['name']}")
    for _ in range(4):
        status, _body = numbers_ws.call(ADD, {"a": 1, "b": 2})
        assert status == 200


def test_numbers_replica_removed_by_hand_is_restored(numbers_ws: LiveWorkspace) -> None:
    processes = numbers_ws.state_show(DEPLOYMENT)["attributes"]["processes"]
    numbers_ws.supervisor.remove_program(processes[1]["name"])
    plan = numbers_ws.plan_json()
    change = next(c for c in plan["resource_changes"] if c["address"] == DEPLOYMENT)
    assert (change["action"], change["reason"]) == ("update", "update_because_changed_outside_cmlplan")
    numbers_ws.apply()

    def both_running() -> bool:  # supervisord says STARTING for startsecs=1 after a (fast) start
        return len([p for p in numbers_ws.programs("r.numbers.add.") if p.state == "RUNNING"]) == 2

    wait_for(both_running, timeout=10, what="2 RUNNING replicas")
    assert len(numbers_ws.state_show(DEPLOYMENT)["attributes"]["processes"]) == 2
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_numbers_failing_build_keeps_the_old_one_serving(numbers_ws: LiveWorkspace) -> None:
    before = numbers_ws.spec.read_text()
    (numbers_ws.dir / "fail.sh").write_text("echo about to fail\nexit 3\n")
    numbers_ws.replace_in_spec("authentication: false", "authentication: false\n  build: {script: fail.sh}")
    try:
        result = numbers_ws.apply(check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "exit status 3" in output
        assert "| about to fail" in output  # the log tail
        assert "(log: " in output and ".log" in output
        status, body = numbers_ws.call(ADD, {"a": 2, "b": 2})
        assert (status, body["response"]) == (200, {"result": 4})
    finally:
        numbers_ws.set_spec(before)
        (numbers_ws.dir / "fail.sh").unlink()
    numbers_ws.apply()


def test_numbers_rollout_has_zero_downtime_then_rollback(numbers_ws: LiveWorkspace) -> None:
    key = numbers_ws.key(ADD)
    results: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = numbers_ws.post({"accessKey": key, "request": {"a": 1, "b": 1}}, timeout=10)
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
        source = numbers_ws.dir / "add.py"
        source.write_text(source.read_text() + "\n# a change that makes build 2\n")
        result = numbers_ws.apply()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(15)
    assert "build.numbers/add#2: Creation complete" in result.stdout
    assert f"+/- {DEPLOYMENT}" in result.stdout
    assert "1 replaced" in result.stdout
    assert len(results) > 50, len(results)
    assert not failures, failures[:5]
    attributes = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    assert attributes["build"] == 2

    numbers_ws.replace_in_spec(ADD_DEPLOYMENT_LINE, "deployment: {replicas: 2, cpu: 1, memory: 512Mi, env: {}, build: 1}")
    result = numbers_ws.apply()
    assert not [line for line in result.stdout.splitlines() if line.startswith("build.") and "Creat" in line]
    attributes = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    assert attributes["build"] == 1
    status, body = numbers_ws.call(ADD, {"a": 20, "b": 22})
    assert (status, body["response"]) == (200, {"result": 42})
    assert body["ReplicaID"] in {p["replica_id"] for p in attributes["processes"]}


def test_numbers_stopped_model_answers_503(numbers_ws: LiveWorkspace) -> None:
    line = next(
        line for line in numbers_ws.spec.read_text().splitlines() if line.strip().startswith("deployment:")
    )
    assert line.endswith("}")
    numbers_ws.replace_in_spec(line, line[:-1] + ", stopped: true}")
    numbers_ws.apply()
    status, body = numbers_ws.call(ADD, {"a": 1, "b": 1})
    assert status == 503
    assert "stopped" in body["errors"]["model.stopped"]
    assert not [p for p in numbers_ws.programs("r.numbers.add.")]
    numbers_ws.replace_in_spec(", stopped: true}", "}")
    numbers_ws.apply()
    status, body = numbers_ws.call(ADD, {"a": 1, "b": 1})
    assert (status, body["response"]) == (200, {"result": 2})


def test_numbers_no_secret_leaks(numbers_ws: LiveWorkspace) -> None:
    _assert_no_leak(numbers_ws)


# -- a slow model: busy and timeout ----------------------------------------------------------------


def test_slow_model_busy_then_timeout(slow_ws: LiveWorkspace) -> None:
    statuses: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def one() -> None:
        answer = slow_ws.call("model.waits/slow", {"seconds": 1.6})
        with lock:
            statuses.append(answer)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = sorted(status for status, _ in statuses)
    assert codes.count(200) >= 1, statuses
    busy = [body for status, body in statuses if status == 429]
    assert busy, statuses
    assert all("model.busy" in body["errors"] for body in busy)

    status, body = slow_ws.call("model.waits/slow", {"seconds": 4})
    assert (status, list(body["errors"])) == (504, ["model.timeout"])
    time.sleep(2.5)  # let the replica finish the abandoned prediction
    status, body = slow_ws.call("model.waits/slow", {"seconds": 0})
    assert status == 200, body


def test_slow_no_secret_leaks(slow_ws: LiveWorkspace) -> None:
    _assert_no_leak(slow_ws)

