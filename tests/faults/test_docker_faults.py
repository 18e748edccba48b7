"""The fault tests of test_replica_kill_under_load.py and test_hanging_model.py, on the docker provider.

One workspace (applied once for the module) serves ``faults/add`` (authentication on, an API key for
alice) and ``faults/hang`` (hangs forever on ``{"hang": true}``), two replica containers each,
behind a proxy with request_timeout 2 s.

- A replica killed under steady load through the proxy: at most the one in-flight request fails
  (502 replica.failed), every other one answers 200 (a refused connection, or a name Docker's DNS no
  longer resolves, is retried on the other replica). Killed as a crash or the OOM killer would (SIGKILL
  of its process from the host), the restart policy (on-failure) starts it again within 15 s.
  Killed with ``docker kill -s KILL``, the engine records a deliberate stop and its restart policy
  does not apply (Docker's rule for kill/stop): the next ``cmlplan apply`` replaces the container.
- The proxy container killed: the restart policy brings it back on the same port from the same
  routes.json, so the same access key and API key work.
- A hanging model: 504 model.timeout at 2 s; the replica's watchdog (``--prediction-timeout`` 7 s)
  exits it with code 70 and the restart policy starts it again, while its other replica and the
  other model keep serving.

Skipped only when no Docker engine answers (the ``docker_engine`` fixture of tests/providers/docker).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from faultkit import Load, wait_for

DOCKER_TESTS = Path(__file__).resolve().parents[1] / "providers" / "docker"


def _load(name: str, path: Path) -> ModuleType:
    """Load a helper of tests/providers/docker by path (the tests folder is not a package)."""
    if name in sys.modules:  # already imported by the docker tests in this session
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# "dockerws" under its own name, so the docker conftest's `from dockerws import ...` finds this one
dockerws = _load("dockerws", DOCKER_TESTS / "dockerws.py")
docker_engine = _load("cmlplan_docker_e2e_fixtures", DOCKER_TESTS / "conftest.py").docker_engine  # fixture
DockerWorkspace = dockerws.DockerWorkspace
docker = dockerws.docker

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REQUEST_TIMEOUT = 2.0
MARGIN = 5.0  # cmlplan.providers.deployments.PREDICTION_TIMEOUT_MARGIN, used by both providers
BACK_WITHIN = 15.0

MODELS = '''\
import time


def add(args):
    return {"result": args["a"] + args["b"]}


def hang(args):
    if args.get("hang"):
        while True:  # never returns
            time.sleep(1)
    return {"ok": True}
'''

SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: docker-faults}
spec:
  provider: local
  users: [{name: alice}]
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {name: default}
spec: {host: 127.0.0.1, port: 8791, busy_timeout: 5s, request_timeout: 2s, max_request_size: 1MB}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: faults}
spec:
  collaborators: {alice: owner}
---
apiVersion: cmlplan/v1
kind: ApiKey
metadata: {name: alice-ci}
spec: {user: alice, expires_in: 30d}
"""

MODEL = """\
---
apiVersion: cmlplan/v1
kind: Model
metadata: {{name: {name}, project: faults}}
spec:
  source: {{file: models.py, function: {name}}}
  runtime: {{python: "3.11"}}
  authentication: {auth}
  deployment: {{replicas: 2, cpu: 1, memory: 256Mi}}
"""


@pytest.fixture(scope="module")
def ws(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    source = tmp_path_factory.mktemp("docker-faults-src") / "faults"
    source.mkdir()
    (source / "models.py").write_text(MODELS)
    (source / "cmlplan.yaml").write_text(
        SPEC + MODEL.format(name="add", auth="true") + MODEL.format(name="hang", auth="false")
    )
    target = tmp_path_factory.mktemp("docker-faults") / "faults"
    with dockerws.docker_workspace(source, target, "faults") as workspace:  # destroys + removes leftovers
        started = time.monotonic()
        workspace.apply()
        print(f"\ndocker-faults apply: {time.monotonic() - started:.1f}s")
        yield workspace


# -- helpers -------------------------------------------------------------------------------------


def crash(name: str) -> int:
    """SIGKILL the container's process from the host, as a crash or the OOM killer would end it
    (not ``docker kill``, which the engine records as a deliberate stop). Returns the killed pid."""
    pid = running_pid(name)
    assert pid, f"{name} is not running"
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:  # not root: kill it from a throwaway container in the host's pid namespace
        docker("run", "--rm", "--pid=host", "--privileged", dockerws.BASE_IMAGE, "sh", "-c", f"kill -9 {pid}", timeout=60)
    return pid


def restarted(name: str, old_pid: int) -> int:
    """The new pid once the container runs again with another process, else 0."""
    pid = running_pid(name)
    return pid if pid and pid != old_pid else 0


def exit_codes(name: str, since: float) -> list[str]:
    """Exit codes of the container's deaths since ``since`` (epoch seconds), from the engine's events."""
    events = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter", f"container={name}",
        "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}", timeout=30,
    )
    return events.stdout.split()


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name, timeout=30).stdout)[0]


def running_pid(name: str) -> int:
    """The host pid of the container's main process while it runs, else 0."""
    state = inspect(name)["State"]
    return int(state["Pid"]) if state["Running"] and not state["Restarting"] else 0


def replicas(ws: Any, model: str) -> list[str]:
    return [p["name"] for p in ws.state_show(f"deployment.faults/{model}")["attributes"]["processes"]]


def proxy_name(ws: Any) -> str:
    return f"cmlplan-{ws.name}-proxy-0"


def caller(ws: Any, access_key: str, api_key: str) -> Callable[[], int]:
    body = json.dumps({"accessKey": access_key, "request": {"a": 1, "b": 2}}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}

    def call() -> int:
        request = urllib.request.Request(ws.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code

    return call


def add_works(ws: Any, api_key: str) -> bool:
    status, body = ws.call("model.faults/add", {"a": 2, "b": 3}, api_key=api_key, timeout=10)
    return status == 200 and body["response"] == {"result": 5}


class MoreThanInFlightFailed(AssertionError):
    """Calls other than the one in flight on the killed replica failed (or not with 502)."""


def assert_only_in_flight_failed(statuses: dict[int, int]) -> None:
    failed = {status: n for status, n in statuses.items() if status != 200}
    assert sum(statuses.values()) > 100, statuses
    if not (set(failed) <= {502} and sum(failed.values()) <= 1):
        raise MoreThanInFlightFailed(f"more than the in-flight request failed: {statuses}")


# -- the tests (file order: the kills first, then the hanging model) -----------------------------


def test_replica_crash_under_load_is_restarted_by_the_policy(ws: Any) -> None:
    api_key = ws.key("apikey.alice-ci")
    call = caller(ws, ws.key("model.faults/add"), api_key)
    assert call() == 200
    victim = replicas(ws, "add")[0]
    restarts = inspect(victim)["RestartCount"]

    with Load(call, threads=4, seconds=8.0) as load:
        time.sleep(3.0)
        killed_at = time.monotonic()
        old_pid = crash(victim)
        new_pid = wait_for(lambda: restarted(victim, old_pid), BACK_WITHIN, what=f"{victim} running again")
        back_after = time.monotonic() - killed_at
        load.wait()
    statuses = load.statuses()
    print(f"\ncrash under load: {statuses}; {victim} back after {back_after:.1f}s")
    assert_only_in_flight_failed(statuses)
    assert new_pid != old_pid and back_after < BACK_WITHIN
    assert inspect(victim)["RestartCount"] == restarts + 1  # the restart policy, the same container
    wait_for(lambda: both_replicas_answer(ws, api_key), 15, what="both add replicas answer")


def test_replica_docker_killed_under_load_is_replaced_by_apply(ws: Any) -> None:
    api_key = ws.key("apikey.alice-ci")
    call = caller(ws, ws.key("model.faults/add"), api_key)
    victim = replicas(ws, "add")[0]
    proxy_since = time.time()

    with Load(call, threads=4, seconds=8.0) as load:
        time.sleep(3.0)
        docker("kill", "-s", "KILL", victim, timeout=30)
        load.wait()
    statuses = load.statuses()
    warnings = docker("logs", "--since", f"{proxy_since:.3f}", proxy_name(ws), timeout=30)
    print(f"\ndocker kill under load: {statuses}; proxy log:\n" + (warnings.stdout + warnings.stderr)[-1500:])
    # a deliberate stop: the engine does not restart it, the plan sees a replica missing
    state = inspect(victim)["State"]
    assert state["Status"] == "exited" and not state["Restarting"], state
    plan = ws.cli("plan", "-detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    started = time.monotonic()
    ws.apply()
    replaced_after = time.monotonic() - started
    print(f"apply replaced {victim} in {replaced_after:.1f}s")
    assert replaced_after < BACK_WITHIN
    now = replicas(ws, "add")
    assert len(now) == 2 and all(running_pid(name) for name in now), now
    assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    wait_for(lambda: both_replicas_answer(ws, api_key), 15, what="both add replicas answer")
    assert_only_in_flight_failed(statuses)  # last: the replacement above is checked either way


def test_proxy_crash_is_restarted_with_the_same_keys(ws: Any) -> None:
    api_key = ws.key("apikey.alice-ci")
    call = caller(ws, ws.key("model.faults/add"), api_key)
    proxy = proxy_name(ws)
    restarts = inspect(proxy)["RestartCount"]
    killed_at = time.monotonic()
    old_pid = crash(proxy)
    wait_for(lambda: restarted(proxy, old_pid), BACK_WITHIN, what="proxy container running again")
    wait_for(lambda: call() == 200, BACK_WITHIN, what="the proxy answers with the same keys")
    print(f"\nproxy back and serving after {time.monotonic() - killed_at:.1f}s")
    assert inspect(proxy)["RestartCount"] == restarts + 1
    status, body = ws.call("model.faults/add", {"a": 20, "b": 22}, api_key=api_key)
    assert (status, body.get("response")) == (200, {"result": 42})
    assert ws.call("model.faults/add", {"a": 1, "b": 1}, api_key="not-a-key")[0] in (401, 403)
    assert ws.post({"accessKey": "wrong", "request": {"a": 1, "b": 1}}, api_key=api_key)[0] in (401, 403, 404)
    assert ws.call("model.faults/hang", {"hang": False})[0] == 200


def test_docker_hanging_prediction_gets_504_and_the_replica_is_replaced(ws: Any) -> None:
    api_key = ws.key("apikey.alice-ci")
    names = replicas(ws, "hang")
    assert len(names) == 2
    for name in names:
        command = inspect(name)["Config"]["Cmd"]
        assert command[command.index("--prediction-timeout") + 1] == f"{REQUEST_TIMEOUT + MARGIN:g}", command
    before = {name: (running_pid(name), inspect(name)["RestartCount"]) for name in names}
    since = time.time() - 1

    started = time.monotonic()
    status, body = ws.call("model.faults/hang", {"hang": True}, timeout=30)
    elapsed = time.monotonic() - started
    assert status == 504 and "model.timeout" in body["errors"], body
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < REQUEST_TIMEOUT + 2

    # while the hung replica waits for its watchdog, the other replica and the other model serve
    serving_during: list[int] = []
    deadline = time.monotonic() + MARGIN - 1
    while time.monotonic() < deadline:
        serving_during.append(ws.call("model.faults/hang", {"hang": False}, timeout=10)[0])
        assert add_works(ws, api_key)
        time.sleep(0.2)
    assert serving_during and set(serving_during) == {200}, serving_during

    def replaced() -> str | None:
        return next(
            (n for n, (pid, count) in before.items() if restarted(n, pid) and inspect(n)["RestartCount"] > count),
            None,
        )

    name = wait_for(replaced, REQUEST_TIMEOUT + MARGIN + BACK_WITHIN - (time.monotonic() - started),
                    what="a hang replica restarted")
    print(f"\n{name} restarted {time.monotonic() - started:.1f}s after the hanging call")
    assert exit_codes(name, since) == ["70"]
    log = docker("logs", name, timeout=30)
    assert f"ran longer than {REQUEST_TIMEOUT + MARGIN:g}s; exiting so the supervisor replaces this replica" in (
        log.stdout + log.stderr
    )
    wait_for(lambda: ws.call("model.faults/hang", {"hang": False}, timeout=10)[0] == 200, 10, what="hang serves")
    assert add_works(ws, api_key)


def both_replicas_answer(ws: Any, api_key: str) -> bool:
    seen = set()
    for _ in range(8):
        status, body = ws.call("model.faults/add", {"a": 1, "b": 1}, api_key=api_key, timeout=10)
        if status == 200:
            seen.add(body.get("ReplicaID"))
    return len(seen) == 2
