"""GET /metrics: Prometheus text with requests by model and code, latency and busy replicas."""

KEY = "ak-metrics-5150"


def test_metrics_count_requests_by_model_and_status(serving, tmp_path):
    replica = serving.replica("add", "add-1")
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", [replica])}, generation=4
    )
    proxy = serving.proxy(routes)
    for _ in range(3):
        assert serving.call_model(proxy, KEY, {"a": 1, "b": 1}).status == 200
    assert serving.call_model(proxy, "ak-unknown", {}).status == 404
    reply = serving.http("GET", proxy.url + "/metrics")
    assert reply.status == 200
    text = reply.raw.decode()
    assert 'cmlplan_proxy_requests_total{code="200",model="model.iris/add"} 3.0' in text
    assert 'cmlplan_proxy_requests_total{code="404",model="-"} 1.0' in text
    assert 'cmlplan_proxy_request_seconds_count{model="model.iris/add"} 3.0' in text
    assert 'cmlplan_proxy_replicas_busy{model="model.iris/add"} 0.0' in text
    assert "cmlplan_proxy_routes_generation 4.0" in text
    assert KEY not in text
