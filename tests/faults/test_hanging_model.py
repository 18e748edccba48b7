"""Models that misbehave: one hangs forever on some input, one allocates past its memory limit.

Hanging: the proxy answers 504 at request_timeout (2 s here); the replica's watchdog (the local
provider passes --prediction-timeout = request_timeout + 5 s) ends it with exit 70 and supervisord
starts a new one, so the replica is replaced (new pid) within request_timeout + 5 + 10 s, while the
model's other replica and the other models keep serving.

Leaking: RLIMIT_DATA makes the allocation fail (MemoryError, answered 500) or the replica dies (502)
and is restarted; the proxy never goes down and the other models keep serving.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from faultkit import FaultWorkspace, fault_workspace, wait_for

pytestmark = pytest.mark.slow

MODELS = '''\
import time


def hang(args):
    if args.get("hang"):
        while True:  # never returns
            time.sleep(1)
    return {"ok": True}


def leak(args):
    hog = []
    for _ in range(1024):  # 1 GB in 1 MB pieces, far past the 256Mi limit
        hog.append(bytearray(1024 * 1024))
    return len(hog)


def add(args):
    return {"result": args["a"] + args["b"]}
'''

SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: misbehaving}
spec:
  provider: local
  users: [{name: alice}]
---
apiVersion: cmlplan/v1
kind: Proxy
metadata: {name: default}
spec: {host: 127.0.0.1, port: 8790, busy_timeout: 5s, request_timeout: 2s, max_request_size: 1MB}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: bad}
spec:
  collaborators: {alice: owner}
"""

MODEL = """\
---
apiVersion: cmlplan/v1
kind: Model
metadata: {{name: {name}, project: bad}}
spec:
  source: {{file: models.py, function: {name}}}
  authentication: false
  deployment: {{replicas: {replicas}, cpu: 1, memory: 256Mi}}
"""

REQUEST_TIMEOUT = 2.0
MARGIN = 5.0


@pytest.fixture(scope="module")
def bad_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorkspace]:
    source = tmp_path_factory.mktemp("faults-src") / "bad"
    source.mkdir()
    (source / "models.py").write_text(MODELS)
    (source / "cmlplan.yaml").write_text(
        SPEC + "".join(MODEL.format(name=n, replicas=r) for n, r in (("hang", 2), ("leak", 1), ("add", 1)))
    )
    with fault_workspace(source, tmp_path_factory.mktemp("faults") / "bad") as ws:
        ws.apply()
        yield ws


def replica_names(ws: FaultWorkspace, model: str) -> list[str]:
    return [p["name"] for p in ws.state_show(f"deployment.bad/{model}")["attributes"]["processes"]]


def add_works(ws: FaultWorkspace) -> bool:
    status, body = ws.call("model.bad/add", {"a": 2, "b": 3}, timeout=10)
    return status == 200 and body["response"] == {"result": 5}


def test_hanging_prediction_gets_504_and_the_replica_is_replaced(bad_ws: FaultWorkspace) -> None:
    ws = bad_ws
    for name in replica_names(ws, "hang"):
        command = (ws.supervisor.programs_dir / f"{name}.conf").read_text()
        assert f"--prediction-timeout {REQUEST_TIMEOUT + MARGIN:g}" in command
    before = {n: pid for n, (_s, pid) in ws.programs_by_name().items() if n.startswith("r.bad.hang.")}
    assert len(before) == 2

    started = time.monotonic()
    status, body = ws.call("model.bad/hang", {"hang": True}, timeout=30)
    elapsed = time.monotonic() - started
    assert status == 504 and "model.timeout" in body["errors"], body
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < REQUEST_TIMEOUT + 2

    # while the hung replica waits for its watchdog, the other replica and other models serve
    serving_during: list[int] = []
    deadline = time.monotonic() + MARGIN - 1
    while time.monotonic() < deadline:
        serving_during.append(ws.call("model.bad/hang", {"hang": False}, timeout=10)[0])
        assert add_works(ws)
        time.sleep(0.2)
    assert serving_during and set(serving_during) == {200}, serving_during

    def replaced() -> str | None:
        now = ws.programs_by_name()
        return next(
            (n for n, pid in before.items() if now[n][1] not in (None, pid) and now[n][0] == "RUNNING"), None
        )

    name = wait_for(replaced, REQUEST_TIMEOUT + MARGIN + 10 - (time.monotonic() - started), what="a new hang replica")
    log = (ws.dir / ".cmlplan" / "logs" / f"{name}.log").read_text()
    assert f"ran longer than {REQUEST_TIMEOUT + MARGIN:g}s; exiting so the supervisor replaces this replica" in log
    wait_for(lambda: ws.call("model.bad/hang", {"hang": False}, timeout=10)[0] == 200, 10, what="hang serves")
    assert add_works(ws)


def test_leaking_model_is_stopped_and_the_proxy_stays_up(bad_ws: FaultWorkspace) -> None:
    ws = bad_ws
    health_url = f"http://127.0.0.1:{ws.port}/healthz"
    down: list[str] = []
    checks = [0]
    stop = threading.Event()

    def watch_proxy() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health_url, timeout=2) as reply:
                    json.loads(reply.read())
                    checks[0] += 1
            except Exception as exc:  # noqa: BLE001
                down.append(repr(exc))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_proxy, daemon=True)
    watcher.start()
    try:
        for _ in range(3):
            status, body = ws.call("model.bad/leak", {}, timeout=30)
            assert status in (500, 502), (status, body)
            if status == 500:
                assert "MemoryError" in body["errors"]["model.exception"], body
            assert add_works(ws)
        (leak,) = replica_names(ws, "leak")
        wait_for(lambda: ws.programs_by_name()[leak][0] == "RUNNING", 15, what="leak replica RUNNING")
        assert ws.programs_by_name()["cmlplan-proxy-0"][0] == "RUNNING"
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert not down and checks[0] > 10, (down, checks)
