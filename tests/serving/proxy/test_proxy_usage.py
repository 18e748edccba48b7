"""Replica CPU and memory through a real proxy: it polls each replica's /usage off the request path
and writes minute cells; the metrics API and Prometheus carry them."""

import json
import re
import time
from pathlib import Path

import pytest

from cmlplan.serving.store import open_store
from cmlplan.serving.store.usage import read_usage

KEY, IDLE_KEY, API_KEY = "ak-usage-burn", "ak-usage-old", "api-usage-viewer"
MIB = 1 << 20
BURN = """
import time

HELD = b"\\x01" * (96 << 20)  # touched, so it is resident


def burn(args):
    end = time.process_time() + args["seconds"]
    while time.process_time() < end:
        pass
    return len(HELD)


def add(args):
    return args["a"] + args["b"]
"""


def start(serving, tmp_path: Path, *, flush: float = 0.3, extra: list[str] | None = None):
    source = tmp_path / "burn"
    source.mkdir(exist_ok=True)
    (source / "predict.py").write_text(BURN)
    burner = serving.replica("burn", "burn-r0", source=source)
    old = serving.replica("add", "add-old", source=source, extra=["--usage-source", "none"])
    burn_entry = serving.model_entry("model.iris/burn", [burner])
    old_entry = serving.model_entry("model.iris/old", [old])
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {KEY: burn_entry, IDLE_KEY: old_entry},
        api_keys={API_KEY: {"name": "viewer", "user": "bob"}},
        projects={"iris": {"bob": "viewer"}},
    )
    document = json.loads(routes.read_text())
    document["proxy"].update(metrics_store={"url": "sqlite:metrics.db"}, technical_flush_seconds=flush)
    routes.write_text(json.dumps(document))
    return serving.proxy(routes), burn_entry["replicas"][0]["id"], old_entry["replicas"][0]["id"]


def technical(serving, proxy, model: str, replica: str | None = None) -> list[dict]:
    end = int(time.time() * 1000) + 60_000
    reply = serving.http(
        "POST", proxy.url + "/metrics/technical",
        {"model": model, "start_timestamp_ms": end - 3_600_000, "end_timestamp_ms": end, "replica": replica},
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert reply.status == 200, reply.body
    return reply.body["cells"]


def test_a_busy_replica_shows_its_cpu_and_memory_in_store_api_and_prometheus(serving, tmp_path):
    proxy, replica, _old = start(serving, tmp_path)
    db = tmp_path / "metrics.db"
    for _ in range(2):
        assert serving.call_model(proxy, KEY, {"seconds": 0.8}, timeout=30).status == 200

    def stored():
        store = open_store(f"sqlite:{db}")
        try:
            return read_usage(store, "model.iris/burn", 0, 2**62)
        finally:
            store.close()

    serving.wait_until(lambda: sum(c.cpu_seconds for _, c in stored()) >= 1.6, timeout=20)
    cells = stored()
    assert {c.replica for _, c in cells} == {replica}
    assert all(c.memory_max > 96 * MIB for _, c in cells)
    assert sum(c.cpu_seconds for _, c in cells) < sum(c.wall_seconds for _, c in cells) * 1.05  # one thread

    serving.wait_until(lambda: sum(c["requests"] for c in technical(serving, proxy, "model.iris/burn")) == 2)
    answered = technical(serving, proxy, "model.iris/burn")
    assert max(c["cpu_cores"] or 0 for c in answered) > 0.1
    assert all(c["memory_bytes"] > 96 * MIB for c in answered)
    one = technical(serving, proxy, "model.iris/burn", replica=replica)  # all replicas or one: the only one
    assert one and {c["replica"] for c in one} == {replica} and all(c["memory_bytes"] for c in one)
    assert technical(serving, proxy, "model.iris/burn", replica="another") == []

    text = serving.http("GET", proxy.url + "/metrics").raw.decode()
    labels = f'model="model.iris/burn",project="iris",replica="{replica}"'
    cpu = re.search(rf"^cmlplan_replica_cpu_seconds_total{{{labels}}} (\S+)$", text, re.MULTILINE)
    memory = re.search(rf"^cmlplan_replica_memory_bytes{{{labels}}} (\S+)$", text, re.MULTILINE)
    assert cpu and float(cpu.group(1)) >= 1.6, text
    assert memory and float(memory.group(1)) > 96 * MIB
    assert re.search(rf"^cmlplan_replica_cpu_cores{{{labels}}} ", text, re.MULTILINE)


def test_a_replica_without_usage_is_left_alone_and_charted_without_it(serving, tmp_path):
    proxy, _replica, old = start(serving, tmp_path)
    assert serving.call_model(proxy, IDLE_KEY, {"a": 1, "b": 2}).status == 200
    serving.wait_until(lambda: sum(c["requests"] for c in technical(serving, proxy, "model.iris/old")) == 1, timeout=10)
    (cell,) = technical(serving, proxy, "model.iris/old")
    assert (cell["replica"], cell["cpu_cores"], cell["memory_bytes"]) == (old, None, None)
    assert f'replica="{old}"' not in "\n".join(
        line for line in serving.http("GET", proxy.url + "/metrics").raw.decode().splitlines()
        if line.startswith("cmlplan_replica_memory")
    )  # fmt: skip
    assert proxy.output().count("does not report its usage") == 1  # asked once, then left alone


def test_cpu_comes_from_deltas_of_one_replica_process_and_a_restart_starts_over():
    from cmlplan.serving.proxy.recorder import Recorder
    from cmlplan.serving.proxy.usage import ReplicaUsage

    usage = ReplicaUsage(lambda: None, Recorder(None))  # type: ignore[arg-type, return-value]

    def sample(instance: str, cpu: float, memory: int = 100) -> dict:
        return {"instance": instance, "cpu_seconds": cpu, "memory_bytes": memory, "memory_limit_bytes": None}

    usage.record("model.a/b", "a", "r0", sample("p1", 1.0), now=10.0)
    usage.record("model.a/b", "a", "r0", sample("p1", 1.5, 300), now=11.0)
    usage.record("model.a/b", "a", "r0", sample("p2", 0.1), now=12.0)  # restarted: its counter began again
    usage.record("model.a/b", "a", "r0", sample("p2", 0.3), now=14.0)
    cells = list(usage._cells.values())
    assert sum(c.cpu_seconds for c in cells) == pytest.approx(0.7) and sum(c.wall_seconds for c in cells) == 3.0
    assert sum(c.samples for c in cells) == 4 and max(c.memory_max for c in cells) == 300
    assert usage._latest[("model.a/b", "r0")].cores == pytest.approx(0.1)
    for bad in ({"cpu_seconds": 1.0, "memory_bytes": 1}, sample("p2", float("nan")), sample("p2", True),
                sample("p2", 1.0, -5), {**sample("p2", 1.0), "cpu_limit_cores": "2"}):  # fmt: skip
        try:
            usage.record("model.a/b", "a", "r0", bad, now=20.0)
        except (KeyError, ValueError):
            continue
        raise AssertionError(f"accepted {bad}")
    assert sum(c.samples for c in usage._cells.values()) == 4


def test_two_models_on_one_replica_each_get_its_usage_over_their_own_connection(serving, tmp_path):
    replica = serving.replica("add", "shared-r0")
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {"ak-a": serving.model_entry("model.iris/a", [replica]), "ak-b": serving.model_entry("model.iris/b", [replica])},
    )
    document = json.loads(routes.read_text())
    document["proxy"].update(metrics_store={"url": "sqlite:metrics.db"}, technical_flush_seconds=0.1)
    routes.write_text(json.dumps(document))
    proxy = serving.proxy(routes)

    def sampled(model: str) -> int:
        store = open_store(f"sqlite:{tmp_path / 'metrics.db'}")
        try:
            return sum(c.samples for _, c in read_usage(store, model, 0, 2**62))
        finally:
            store.close()

    serving.wait_until(lambda: sampled("model.iris/a") >= 10 and sampled("model.iris/b") >= 10, timeout=20)
    assert "no CPU/memory sample" not in proxy.output()
