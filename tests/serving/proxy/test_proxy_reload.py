"""SIGHUP reloads: the table swaps at once, in-flight requests finish where they started."""

import signal
from concurrent.futures import ThreadPoolExecutor

KEY = "ak-reload-0c0c"


def test_reload_switches_replicas_while_a_slow_request_is_in_flight(serving, tmp_path):
    old = serving.replica("slow", "old")
    new = serving.replica("slow", "new")
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/slow", [old])}
    )
    proxy = serving.proxy(routes)
    assert serving.http("GET", proxy.url + "/healthz").body == {"status": "ok", "generation": 1}
    with ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(serving.call_model, proxy, KEY, {"sleep": 1.5})
        serving.wait_until(lambda: serving.http("GET", old.url + "/healthz").body["busy"], 5)
        serving.write_routes(routes, {KEY: serving.model_entry("model.iris/slow", [new])}, generation=2)
        serving.reload(proxy, 2)
        after = serving.call_model(proxy, KEY, {"sleep": 0}, timeout=1.0)  # no wait behind the old replica
        assert after.status == 200 and after.body["ReplicaID"] == "new"
        before = inflight.result(timeout=10)
    assert before.status == 200 and before.body["ReplicaID"] == "old"


def test_bad_routes_file_on_reload_keeps_the_old_table(serving, tmp_path):
    replica = serving.replica("add", "add-1")
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", [replica])}, generation=7
    )
    proxy = serving.proxy(routes)
    routes.write_text('{"version": 1, "generation": 8, "salt": "x", "models": {"h": {"address": 3}}}')
    proxy.signal(signal.SIGHUP)
    serving.wait_until(lambda: "routes reload failed" in proxy.output(), 5)
    assert serving.http("GET", proxy.url + "/healthz").body["generation"] == 7
    reply = serving.call_model(proxy, KEY, {"a": 2, "b": 2})
    assert reply.status == 200 and reply.body["response"] == 4
    routes.write_text("{truncated")
    proxy.signal(signal.SIGHUP)
    serving.wait_until(lambda: proxy.output().count("routes reload failed") == 2, 5)
    assert serving.call_model(proxy, KEY, {"a": 2, "b": 2}).status == 200


def test_reload_can_remove_a_model_and_stop_another(serving, tmp_path):
    replica = serving.replica("add", "add-1")
    other = "ak-other-1111"
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {
            KEY: serving.model_entry("model.iris/add", [replica]),
            other: serving.model_entry("model.iris/other", [replica]),
        },
    )
    proxy = serving.proxy(routes)
    serving.write_routes(
        routes, {KEY: serving.model_entry("model.iris/add", [replica], stopped=True)}, generation=2
    )
    serving.reload(proxy, 2)
    assert serving.call_model(proxy, KEY, {"a": 1, "b": 1}).status == 503
    assert serving.call_model(proxy, other, {"a": 1, "b": 1}).status == 404


def test_unreadable_routes_at_start_exits_3(serving, tmp_path):
    routes = tmp_path / "routes.json"
    routes.write_text("[]")
    proxy = serving.proxy(routes, wait=False)
    assert proxy.popen.wait(timeout=15) == 3
    assert "cannot start" in proxy.output()
