"""kill -9 of a replica under steady load, then of the proxy.

A replica serves one prediction at a time, so at most one request is in flight on it when it dies:
that one may fail with 502 replica.failed, every other request answers 200 (the proxy retries a
refused connection on the other replica), and supervisord has the replica back with a new pid
within 10 s. Then the proxy is killed: supervisord restarts it, and it loads the routing table and
the keys from routes.json, so the same access key and API key still work.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
from faultkit import FaultWorkspace, Load, wait_for

pytestmark = pytest.mark.slow


def caller(ws: FaultWorkspace, access_key: str, api_key: str):  # type: ignore[no-untyped-def]
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


def test_replica_and_proxy_killed_under_load(numbers_auth: FaultWorkspace) -> None:
    ws = numbers_auth
    access_key, api_key = ws.key("model.numbers/add"), ws.key("apikey.alice-ci")
    call = caller(ws, access_key, api_key)
    assert call() == 200
    # replica names are r.<project>.<model>.d<deployment>.<rollout token>.<index>
    victim = next(name for name in sorted(ws.programs_by_name()) if re.fullmatch(r"r\.numbers\.add\.d1\.\w+\.0", name))
    old_pid = ws.programs_by_name()[victim][1]
    assert old_pid

    with Load(call, threads=4, seconds=8.0) as load:
        time.sleep(3.0)
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        new_pid = wait_for(
            lambda: (lambda s: s[1] if s[0] == "RUNNING" and s[1] != old_pid else None)(ws.programs_by_name()[victim]),
            10, what=f"{victim} RUNNING with a new pid",
        )
        back_after = time.monotonic() - killed_at
        load.wait()
    statuses = load.statuses()
    print(f"load: {statuses}; {victim} back after {back_after:.1f}s")
    failed = {status: n for status, n in statuses.items() if status != 200}
    assert sum(statuses.values()) > 200, statuses
    assert set(failed) <= {502} and sum(failed.values()) <= 1, f"more than the in-flight request failed: {statuses}"
    assert new_pid != old_pid and back_after < 10
    # the replica that came back serves again (same port, so the route still points at it)
    replica_url = ws.state_show("deployment.numbers/add")["attributes"]["processes"][0]["url"]
    wait_for(lambda: urllib.request.urlopen(replica_url + "/healthz", timeout=2).status == 200, 10, what="healthz")

    proxy_pid = ws.programs_by_name()["cmlplan-proxy-0"][1]
    assert proxy_pid
    os.kill(proxy_pid, signal.SIGKILL)
    wait_for(
        lambda: ws.programs_by_name()["cmlplan-proxy-0"][0] == "RUNNING"
        and ws.programs_by_name()["cmlplan-proxy-0"][1] != proxy_pid,
        15, what="proxy restarted",
    )
    wait_for(lambda: call() == 200, 15, what="the proxy answers with the same keys")
    status, body = ws.call("model.numbers/add", {"a": 20, "b": 22}, api_key=api_key)
    assert (status, body.get("response")) == (200, {"result": 42})
    assert ws.call("model.numbers/add", {"a": 1, "b": 1}, api_key="not-a-key")[0] in (401, 403)
    assert ws.post({"accessKey": "wrong", "request": {"a": 1, "b": 1}}, api_key=api_key)[0] in (401, 403, 404)
