"""Technical metrics from a real proxy: minute cells per model and replica in the store, Prometheus per replica."""

import json
import re
from pathlib import Path

from cmlplan.serving.store import open_store

KEY, BOOM = "ak-tech-add", "ak-tech-boom"
REPO = Path(__file__).resolve().parents[3]


def test_requests_failures_and_bytes_reach_the_store_per_replica(serving, tmp_path):
    add = serving.replica("add", "add-r0")
    boom = serving.replica("boom", "boom-r0")
    add_entry, boom_entry = serving.model_entry("model.iris/add", [add]), serving.model_entry("model.iris/boom", [boom])
    add_id, boom_id = add_entry["replicas"][0]["id"], boom_entry["replicas"][0]["id"]
    routes = serving.write_routes(tmp_path / "routes.json", {KEY: add_entry, BOOM: boom_entry})
    document = json.loads(routes.read_text())
    db = tmp_path / "metrics.db"
    # relative: beside the routing file, as providers write it
    document["proxy"].update(metrics_store={"url": "sqlite:metrics.db"}, technical_flush_seconds=0.2)
    routes.write_text(json.dumps(document))
    proxy = serving.proxy(routes)
    for _ in range(5):
        assert serving.call_model(proxy, KEY, {"a": 1, "b": 2}).status == 200
    assert serving.call_model(proxy, BOOM, {}).status == 500

    def cells():
        store = open_store(f"sqlite:{db}")
        try:
            return {b.model: b for _, b in store.read_technical("model.iris/add", 0, 2**62)} | {
                b.model: b for _, b in store.read_technical("model.iris/boom", 0, 2**62)
            }
        finally:
            store.close()

    serving.wait_until(lambda: sum(b.requests for b in cells().values()) == 6, timeout=10)
    found = cells()
    ok, failed = found["model.iris/add"], found["model.iris/boom"]
    assert (ok.replica, ok.requests, ok.failures, ok.project) == (add_id, 5, 0, "iris")
    sent = json.dumps({"request": {"a": 1, "b": 2}, "accessKey": KEY}).encode()  # as call_model sends it
    assert ok.request_bytes == 5 * len(sent) and ok.response_bytes > 5 * 20
    assert (failed.replica, failed.requests, failed.failures) == (boom_id, 1, 1)
    assert ok.summary(60_000)["p50_ms"] > 0

    text = serving.http("GET", proxy.url + "/metrics").raw.decode()
    assert f'cmlplan_replica_requests_total{{code="200",model="model.iris/add",project="iris",replica="{add_id}"}} 5.0' in text
    assert f'cmlplan_replica_requests_total{{code="500",model="model.iris/boom",project="iris",replica="{boom_id}"}} 1.0' in text


def test_the_grafana_dashboard_only_uses_series_the_proxy_exports(serving, tmp_path):
    replica = serving.replica("add", "add-r0")
    routes = serving.write_routes(tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", [replica])})
    proxy = serving.proxy(routes)
    assert serving.call_model(proxy, KEY, {"a": 1, "b": 2}).status == 200
    exported = serving.http("GET", proxy.url + "/metrics").raw.decode()
    dashboard = json.loads((REPO / "docs" / "grafana" / "cmlplan-serving.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    names = {n for e in exprs for n in re.findall(r"cmlplan_[a-z_]+", e)}
    assert len(names) >= 8
    assert {"cmlplan_replica_cpu_seconds_total", "cmlplan_replica_memory_bytes"} <= names
    serving.wait_until(lambda: "cmlplan_replica_memory_bytes{" in serving.http("GET", proxy.url + "/metrics").raw.decode())
    exported = serving.http("GET", proxy.url + "/metrics").raw.decode()
    for name in names:
        sampled = re.search(rf"^{name}[{{ ]", exported, re.MULTILINE)
        # a limit the replica does not have (no CPU quota outside a container) is a family without samples
        declared = "_limit_" in name and re.search(rf"^# TYPE {name} gauge$", exported, re.MULTILINE)
        assert sampled or declared, f"{name} is not exported by the proxy"
    for label in ("model", "project", "replica", "code"):
        assert f'{label}="' in exported
