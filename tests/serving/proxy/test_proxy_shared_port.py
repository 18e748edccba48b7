"""Several proxy processes share one port through SO_REUSEPORT."""

KEY = "ak-shared-6060"


def test_two_proxies_listen_on_the_same_port(serving, tmp_path):
    replica = serving.replica("add", "add-1")
    routes = serving.write_routes(
        tmp_path / "routes.json", {KEY: serving.model_entry("model.iris/add", [replica])}
    )
    first = serving.proxy(routes)
    port = int(first.url.rsplit(":", 1)[1])
    second = serving.proxy(routes, port=port)
    assert second.popen.poll() is None
    for _ in range(10):
        assert serving.call_model(first, KEY, {"a": 1, "b": 2}).body["response"] == 3
    first.kill()
    serving.wait_healthy(second)  # the port is still served, now by the second process alone
    assert serving.call_model(second, KEY, {"a": 2, "b": 2}).body["response"] == 4
