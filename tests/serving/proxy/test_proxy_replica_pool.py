"""Replica selection under load and failure: 429, FIFO, 504, 502, retries on other replicas."""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

KEY = "ak-slow-31f0"


def start_proxy(serving: Any, tmp_path: Path, replicas: list[Any], **proxy_settings: Any) -> Any:
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/slow", replicas)}, **proxy_settings
    )
    return serving.proxy(routes)


def error_code(reply: Any) -> str:
    (code,) = reply.body["errors"]
    return code


def busy(serving: Any, replica: Any) -> bool:
    return serving.http("GET", replica.url + "/healthz", timeout=2).body["busy"]


def test_all_replicas_busy_past_busy_timeout_is_429(serving, tmp_path):
    replica = serving.replica("slow")
    proxy = start_proxy(serving, tmp_path, [replica], busy_timeout=0.5)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(serving.call_model, proxy, KEY, {"sleep": 2.0})
        serving.wait_until(lambda: busy(serving, replica), 5)
        started = time.monotonic()
        second = serving.call_model(proxy, KEY, {"sleep": 0})
        waited = time.monotonic() - started
        assert second.status == 429 and error_code(second) == "model.busy"
        assert 0.4 < waited < 1.5
        assert first.result(timeout=10).status == 200


def test_waiters_are_served_first_in_first_out(serving, tmp_path):
    replica = serving.replica("slow")
    proxy = start_proxy(serving, tmp_path, [replica], busy_timeout=10)
    finished: list[str] = []
    lock = threading.Lock()

    def call(tag: str) -> int:
        reply = serving.call_model(proxy, KEY, {"sleep": 0.25, "tag": tag})
        with lock:
            finished.append(reply.body["response"]["tag"])
        return reply.status

    with ThreadPoolExecutor(5) as pool:
        futures = []
        for tag in "ABCDE":
            futures.append(pool.submit(call, tag))
            time.sleep(0.08)  # arrive in order; all but A queue behind the one replica
        assert [f.result(timeout=15) for f in futures] == [200] * 5
    assert finished == list("ABCDE")


def test_round_robin_spreads_over_free_replicas(serving, tmp_path):
    replicas = [serving.replica("add", f"add-{i}") for i in range(3)]
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", replicas)}
    )
    proxy = serving.proxy(routes)
    ids = [serving.call_model(proxy, KEY, {"a": 1, "b": 1}).body["ReplicaID"] for _ in range(6)]
    assert set(ids) == {"add-0", "add-1", "add-2"}


def test_no_answer_within_request_timeout_is_504(serving, tmp_path):
    replica = serving.replica("slow")
    proxy = start_proxy(serving, tmp_path, [replica], request_timeout=0.5)
    started = time.monotonic()
    reply = serving.call_model(proxy, KEY, {"sleep": 3.0})
    assert reply.status == 504 and error_code(reply) == "model.timeout"
    assert time.monotonic() - started < 2.0


def test_replica_killed_mid_request_is_502_for_that_request_only(serving, tmp_path):
    doomed = serving.replica("slow", "doomed")
    proxy = start_proxy(serving, tmp_path, [doomed], busy_timeout=0.5)
    with ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(serving.call_model, proxy, KEY, {"sleep": 5.0})
        serving.wait_until(lambda: busy(serving, doomed), 5)
        doomed.popen.send_signal(signal.SIGKILL)
        reply = inflight.result(timeout=10)
    assert reply.status == 502 and error_code(reply) == "replica.failed"
    after = serving.call_model(proxy, KEY, {"sleep": 0})  # the dead replica refuses: nothing reachable
    assert after.status == 503 and error_code(after) == "model.unavailable"
    assert serving.http("GET", proxy.url + "/healthz").status == 200


def test_replica_busy_with_another_proxy_makes_us_try_the_next_one(serving, tmp_path):
    taken = serving.replica("slow", "taken")
    spare = serving.replica("slow", "spare")
    proxy = start_proxy(serving, tmp_path, [taken, spare])
    with ThreadPoolExecutor(1) as pool:
        direct = pool.submit(
            serving.http, "POST", taken.url + "/predict", {"sleep": 1.5}, {"Content-Type": "application/json"}
        )
        serving.wait_until(lambda: busy(serving, taken), 5)
        reply = serving.call_model(proxy, KEY, {"sleep": 0})
        assert reply.status == 200 and reply.body["ReplicaID"] == "spare"
        assert direct.result(timeout=10).status == 200


def test_replica_busy_elsewhere_is_polled_until_free(serving, tmp_path):
    taken = serving.replica("slow", "taken")
    proxy = start_proxy(serving, tmp_path, [taken], busy_timeout=5)
    with ThreadPoolExecutor(1) as pool:
        direct = pool.submit(
            serving.http, "POST", taken.url + "/predict", {"sleep": 0.6}, {"Content-Type": "application/json"}
        )
        serving.wait_until(lambda: busy(serving, taken), 5)
        reply = serving.call_model(proxy, KEY, {"sleep": 0})
        assert reply.status == 200 and reply.body["ReplicaID"] == "taken"
        assert direct.result(timeout=10).status == 200


def test_refused_connection_moves_on_to_a_live_replica(serving, tmp_path):
    live = serving.replica("add", "live")
    dead_url = f"http://127.0.0.1:{serving.free_port()}"
    entry = serving.model_entry("model.iris/add", [live])
    entry["replicas"].insert(0, {"id": "dead", "url": dead_url})
    routes = serving.write_routes(tmp_path / "routes.json", {KEY: entry})
    proxy = serving.proxy(routes)
    for _ in range(3):
        reply = serving.call_model(proxy, KEY, {"a": 1, "b": 2})
        assert reply.status == 200 and reply.body["ReplicaID"] == "live"
