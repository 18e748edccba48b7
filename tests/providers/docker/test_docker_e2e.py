"""End to end: the ``cmlplan`` CLI with the real docker provider (images, containers, the proxy).

Each workspace is applied once per module and its tests run in file order; the last test of the
numbers workspace destroys it and checks that nothing labelled with it is left but the images,
which ``cmlplan gc`` then removes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerws import CMLPLAN, EXAMPLES, PYTHON, DockerWorkspace, docker, docker_workspace

pytestmark = [pytest.mark.slow, pytest.mark.docker]

ADD = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
IRIS = "model.iris/petal-width"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)
    return value


def build_steps(log: str) -> dict[str, bool]:
    """{Dockerfile instruction: cached?} from a classic-builder log."""
    steps: dict[str, bool] = {}
    current = None
    for line in log.splitlines():
        if line.startswith("Step "):
            current = line.split(" : ", 1)[1].strip()
            steps[current] = False
        elif current and line.strip() == "---> Using cache":
            steps[current] = True
    return steps


@pytest.fixture(scope="module")
def numbers_ws(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerWorkspace]:
    with docker_workspace(EXAMPLES / "add-numbers", tmp_path_factory.mktemp("docker") / "add-numbers", "numbers") as ws:
        started = time.monotonic()
        ws.apply()
        print(f"\nadd-numbers cold apply (wheels, image, replicas, proxy): {time.monotonic() - started:.1f}s")
        yield ws


@pytest.fixture(scope="module")
def iris_ws(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerWorkspace]:
    with docker_workspace(EXAMPLES / "iris", tmp_path_factory.mktemp("docker") / "iris", "iris") as ws:
        subprocess.run([str(PYTHON), "fit.py"], cwd=ws.dir, check=True, capture_output=True, timeout=300)
        ws.apply()
        yield ws


# -- serving through the proxy -----------------------------------------------------------------


def test_numbers_answers_through_the_proxy(numbers_ws: DockerWorkspace) -> None:
    status, body = numbers_ws.call(ADD, {"a": 2, "b": 40})
    assert status == 200, body
    assert body["response"] == {"result": 42}
    running = numbers_ws.containers(all_states=False)
    assert len([n for n in running if "-numbers-add-d" in n]) == 2, running
    assert any(n.endswith("-proxy-0") for n in running), running
    state = numbers_ws.state_show("build.numbers/add#1")["attributes"]
    assert state["image"] == f"cmlplan/{numbers_ws.name}-numbers-add:1"
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_iris_answers_through_the_proxy_with_keys(iris_ws: DockerWorkspace) -> None:
    alice = iris_ws.key("apikey.alice-ci")
    seen = set()
    for _ in range(9):
        status, body = iris_ws.call(IRIS, {"petal_length": 5.4}, api_key=alice)
        assert status == 200, body
        assert isinstance(body["response"]["petal_width"], float)
        seen.add(body["ReplicaID"])
    assert len(seen) == 3, seen
    status, body = iris_ws.call(IRIS, {"petal_length": 5.4})
    assert (status, list(body["errors"])) == (401, ["auth.missing"])
    result = iris_ws.cli("call", IRIS, "--input", '{"petal_length": 5.4}')
    assert "status:   200" in result.stdout


# -- builds --------------------------------------------------------------------------------------


def test_code_only_change_rebuilds_only_the_code_layer(numbers_ws: DockerWorkspace) -> None:
    source = numbers_ws.dir / "add.py"
    source.write_text(source.read_text() + "\n# a code-only change\n")
    started = time.monotonic()
    numbers_ws.apply()
    seconds = time.monotonic() - started
    builds = sorted((numbers_ws.dir / ".cmlplan" / "docker" / "numbers" / "add").glob("[0-9]*/build.log"))
    assert len(builds) == 2, builds
    steps = build_steps(builds[-1].read_text())
    print(f"\ncode-only change: apply (build + rollout) {seconds:.1f}s; steps: {steps}")
    install = next(step for step in steps if "pip install" in step)
    assert steps[install], f"the dependencies layer was rebuilt: {steps}"
    assert not steps["COPY src /app"], "the code layer must be rebuilt"
    status, body = numbers_ws.call(ADD, {"a": 1, "b": 1})
    assert (status, body["response"]) == (200, {"result": 2})


def test_a_failing_build_script_shows_the_log_tail(docker_engine: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "hog.py").write_text(HOG_MODEL)
    (source / "build.sh").write_text("echo compiling things\necho oh no >&2\nexit 3\n")
    (source / "cmlplan.yaml").write_text(
        HOG_SPEC.replace("  runtime: {python: \"3.11\"}\n", "  runtime: {python: \"3.11\"}\n  build: {script: build.sh}\n")
    )
    with docker_workspace(source, tmp_path / "failing", "failing") as ws:
        result = ws.cli("apply", "-auto-approve", check=False)
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert "build.mem/hog#1" in output and "failed" in output, output
        log = ws.dir / ".cmlplan" / "docker" / "mem" / "hog" / "1" / "build.log"
        assert log.is_file() and "oh no" in log.read_text()
        assert "| oh no" in output or "|oh no" in output.replace("| ", "|"), output
        assert ws.containers() == []


def test_a_second_folder_with_the_same_workspace_name_is_refused(numbers_ws: DockerWorkspace, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(numbers_ws.dir, twin, ignore=shutil.ignore_patterns(".cmlplan"))
    result = subprocess.run(
        [str(CMLPLAN), "apply", "-auto-approve"], cwd=twin, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 1
    assert "already running on this Docker engine" in result.stdout + result.stderr, result.stdout + result.stderr
    assert numbers_ws.call(ADD, {"a": 1, "b": 1})[0] == 200


# -- zero downtime -------------------------------------------------------------------------------


def test_redeploy_under_load_fails_no_request(numbers_ws: DockerWorkspace) -> None:
    results: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and len(results) < 5000:
            try:
                status, body = numbers_ws.call(ADD, {"a": 3, "b": 4}, timeout=10)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            results.append(status)
            if status != 200:
                errors.append(f"{status}: {body}")

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        source = numbers_ws.dir / "add.py"
        source.write_text(source.read_text() + "\n# redeploy under load\n")
        output = numbers_ws.apply().stdout
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert "1 replaced" in output, output
    assert len(results) > 20, f"too few requests were made: {len(results)}"
    assert not errors, f"{len(errors)} of {len(results) + len(errors)} requests failed: {errors[:5]}"


# -- drift -------------------------------------------------------------------------------------------


def test_removed_replica_is_drift_and_apply_restores_it(numbers_ws: DockerWorkspace) -> None:
    replicas = [n for n in numbers_ws.containers() if "-numbers-add-d" in n]
    assert len(replicas) == 2
    docker("rm", "-f", replicas[1])
    plan = numbers_ws.plan_json()
    assert DEPLOYMENT in [d["address"] for d in plan["resource_drift"]], plan["resource_drift"]
    actions = {c["address"]: c["action"] for c in plan["resource_changes"]}
    assert actions.get(DEPLOYMENT) == "update", actions
    numbers_ws.apply()
    running = sorted(n for n in numbers_ws.containers(all_states=False) if "-numbers-add-d" in n)
    # the survivor keeps serving; the restored one is new (its name carries this rollout's token)
    assert len(running) == 2 and replicas[0] in running and replicas[1] not in running, running
    restored = next(n for n in running if n != replicas[0])
    assert restored.rsplit("-", 1)[1] == replicas[1].rsplit("-", 1)[1], "it takes the removed one's index"
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    assert numbers_ws.call(ADD, {"a": 1, "b": 2})[0] == 200


def test_stopped_replica_is_drift_and_apply_restarts_it(numbers_ws: DockerWorkspace) -> None:
    replicas = [n for n in numbers_ws.containers() if "-numbers-add-d" in n]
    docker("stop", "-t", "1", replicas[0])
    result = numbers_ws.cli("plan", "-detailed-exitcode", check=False)
    assert result.returncode == 2, result.stdout
    numbers_ws.apply()
    assert len([n for n in numbers_ws.containers(all_states=False) if "-numbers-add-d" in n]) == 2
    assert numbers_ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0


def test_restart_keeps_build_and_deployment_and_the_replaced_replicas_logs(numbers_ws: DockerWorkspace) -> None:
    before = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    old = sorted(n for n in numbers_ws.containers(all_states=False) if "-numbers-add-d" in n)
    result = numbers_ws.cli("restart", ADD)
    assert "Restart complete: 2 replica(s)" in result.stdout, result.stdout
    after = numbers_ws.state_show(DEPLOYMENT)["attributes"]
    assert (after["deployment_id"], after["build"]) == (before["deployment_id"], before["build"])
    new = sorted(n for n in numbers_ws.containers(all_states=False) if "-numbers-add-d" in n)
    assert len(new) == 2 and not set(old) & set(new), (old, new)
    assert numbers_ws.call(ADD, {"a": 1, "b": 2})[0] == 200
    lines = [json.loads(line) for line in numbers_ws.cli("logs", ADD, "--json").stdout.splitlines()]
    sources = {line["source"] for line in lines}
    for name in old + new:  # the removed containers' logs were kept on the host
        assert any(f"({name})" in source for source in sources), (name, sources)
    kept = numbers_ws.dir / ".cmlplan" / "logs" / "docker" / "numbers" / "add"
    assert set(old) <= {p.stem for p in kept.glob("*.log")}  # (with those earlier rollouts in this module replaced)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept.glob("*.log"))
    one = numbers_ws.cli("logs", ADD, "--replica", "0").stdout.splitlines()
    assert one and all(line.startswith("replica 0 (") for line in one), one


# -- memory ------------------------------------------------------------------------------------------

HOG_MODEL = '''\
"""Allocates (and touches) args["mb"] megabytes."""


def hog(args):
    data = b"x" * (int(args.get("mb", 0)) * 1024 * 1024)
    return {"allocated": len(data)}
'''

HOG_SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: hog-demo}
spec:
  provider: local
  users: [{name: alice}]
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {name: default}
spec: {host: 127.0.0.1, port: 8790, busy_timeout: 2s, request_timeout: 5s, max_request_size: 1MB}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: mem}
spec:
  collaborators: {alice: owner}
---
apiVersion: cmlplan/v1
kind: Model
metadata: {name: hog, project: mem}
spec:
  source: {file: hog.py, function: hog}
  runtime: {python: "3.11"}
  authentication: false
  examples:
    - input: {mb: 1}
  deployment: {replicas: 1, cpu: 0.5, memory: 64Mi}
"""


@pytest.fixture()
def hog_ws(docker_engine: str, tmp_path: Path) -> Iterator[DockerWorkspace]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "hog.py").write_text(HOG_MODEL)
    (source / "cmlplan.yaml").write_text(HOG_SPEC)
    with docker_workspace(source, tmp_path / "hog", "hog") as ws:
        ws.apply()
        yield ws


def test_memory_limit_oom_kills_and_restarts_the_replica(hog_ws: DockerWorkspace) -> None:
    model = "model.mem/hog"
    status, body = hog_ws.call(model, {"mb": 8}, timeout=15)
    assert status == 200, body
    (replica,) = [n for n in hog_ws.containers() if "-mem-hog-d" in n]
    started = time.monotonic()
    status, body = hog_ws.call(model, {"mb": 512}, timeout=15)
    assert status in (502, 503), (status, body)
    assert time.monotonic() - started < 10, "the proxy must answer, not hang"

    def restarted() -> bool:
        return int(docker("inspect", "-f", "{{.RestartCount}}", replica).stdout.strip() or 0) >= 1

    wait_for(restarted, 30, "docker to restart the OOM-killed replica")
    statuses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        asked = time.monotonic()
        status, body = hog_ws.call(model, {"mb": 1}, timeout=15)
        assert time.monotonic() - asked < 10, "the proxy must answer, not hang"
        statuses.append(status)
        if status == 200:
            break
        assert status in (502, 503), (status, body)
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    exit_code = docker("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", replica).stdout
    print(f"\nafter the OOM kill: statuses {statuses}, state {exit_code.strip()}")


ENV_MODEL = '''\
import os


def show(args):
    return {"greeting": os.environ.get("GREETING"), "plain": os.environ.get("PLAIN"), "user": os.getuid()}
'''


def _word_list_search():  # type: ignore[no-untyped-def]
    """tests/hostile/test_word_list.py's search (loaded by path: test folders are not packages)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[2] / "hostile" / "test_word_list.py"
    spec = importlib.util.spec_from_file_location("word_list_search", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("word_list_search", module)
    spec.loader.exec_module(module)
    return module


def test_env_secrets_reach_the_replica_but_no_file(docker_engine: str, tmp_path: Path) -> None:
    words = _word_list_search()
    secret = words.SECRET_WORD  # a word of the list: nothing written may confirm it
    source = tmp_path / "src"
    source.mkdir()
    (source / "show.py").write_text(ENV_MODEL)
    spec = HOG_SPEC.replace("name: hog, project: mem", "name: show, project: mem").replace(
        "source: {file: hog.py, function: hog}", "source: {file: show.py, function: show}"
    ).replace("    - input: {mb: 1}\n", "    - input: {}\n").replace(
        "memory: 64Mi}", "memory: 256Mi, env: {GREETING: \"${env:CMLPLAN_TEST_GREETING}\", PLAIN: hello}}"
    )
    (source / "cmlplan.yaml").write_text(spec)
    with docker_workspace(source, tmp_path / "env", "env") as ws:
        ws.cli("apply", "-auto-approve", env={"CMLPLAN_TEST_GREETING": secret})
        status, body = ws.call("model.mem/show", {})
        assert status == 200, body
        assert body["response"]["greeting"] == secret and body["response"]["plain"] == "hello"
        assert body["response"]["user"] == 65534, "replicas run as nobody"
        # files (state with the containers' environment hashes, routes, build contexts), and the
        # containers' labels (their environment holds the value: that is how Docker passes it)
        labels = [docker("inspect", "--format", "{{json .Config.Labels}}", name).stdout for name in ws.containers()]
        assert any('"cmlplan.secret-env":"GREETING"' in text for text in labels), labels
        processes = ws.state_show("deployment.mem/show")["attributes"]["processes"]
        assert processes and all(str(p.get("env_hash", "")).startswith("m:") for p in processes), processes
        salt = json.loads((ws.dir / ".cmlplan" / "state.json").read_text())["salt"]
        hits, count, _ = words.search(ws.dir, labels, salt)
        assert count > 10 and hits == [], hits[:20]
        # an unchanged secret plans no change (state holds only its keyed fingerprint)
        assert ws.cli("plan", "-detailed-exitcode", check=False, env={"CMLPLAN_TEST_GREETING": secret}).returncode == 0


# -- destroy and gc (last: the numbers workspace goes) -----------------------------------------------


def test_destroy_leaves_only_images_until_gc(numbers_ws: DockerWorkspace) -> None:
    images = docker("images", "-q", "--filter", f"label=cmlplan.workspace={numbers_ws.name}").stdout.split()
    assert images, "the builds' images should exist"
    still_recorded = numbers_ws.cli("gc").stdout
    assert numbers_ws.name not in still_recorded, "gc must keep the images of builds the state records"
    numbers_ws.cli("destroy", "-auto-approve")
    assert numbers_ws.leftovers() == {"containers": [], "networks": [], "volumes": []}
    kept = docker("images", "-q", "--filter", f"label=cmlplan.workspace={numbers_ws.name}").stdout.split()
    assert sorted(set(kept)) == sorted(set(images)), "destroy keeps the images until gc"
    result = numbers_ws.cli("gc")
    assert "removed" in result.stdout, result.stdout
    left = docker("images", "-q", "--filter", f"label=cmlplan.workspace={numbers_ws.name}").stdout.split()
    assert left == [], left
    docker_dir = numbers_ws.dir / ".cmlplan" / "docker"
    assert not (docker_dir / "numbers").exists() and not (docker_dir / "wheels").exists()
    assert "nothing to remove" in numbers_ws.cli("gc").stdout
