"""Retention on a real proxy: minute cells older than the routing table's retention (request
counts and replica CPU/memory alike) are rolled into hour cells soon after the proxy starts, with
every count kept; newer minutes stay minutes."""

import json
import time

from cmlplan.serving.store import open_store
from cmlplan.serving.store.technical import HOUR_MS, MINUTE_MS, Bucket
from cmlplan.serving.store.usage import UsageCell, put_usage, read_usage

MODEL = "model.iris/add"
KEY = "ak-retention"


def seed(url: str, minutes: list[int]) -> None:
    store = open_store(url)
    store.migrate()
    for minute in minutes:
        bucket = Bucket(MODEL, "iris", "r0", minute)
        bucket.add(False, 0.01, 100, 40)
        store.put_technical("an-older-proxy", [bucket])
        cell = UsageCell(MODEL, "iris", "r0", minute)
        cell.add_cpu(6.0, 60.0)
        cell.add_memory(1000, None, None)
        put_usage(store, "an-older-proxy", [cell])
    store.commit()
    store.close()


def test_cells_past_the_retention_become_hours_and_keep_their_counts(serving, tmp_path):
    now = int(time.time() * 1000)
    day = 86_400_000
    old_hour = (now - 3 * day) - (now - 3 * day) % HOUR_MS
    old = [old_hour + i * MINUTE_MS for i in range(0, 50, 7)]  # 8 minutes of one hour, three days ago
    recent = [(now - HOUR_MS) - (now - HOUR_MS) % MINUTE_MS]
    url = f"sqlite:{tmp_path / 'metrics.db'}"
    seed(url, old + recent)

    replica = serving.replica("add", "add-r0")
    routes = serving.write_routes(tmp_path / "routes.json", {KEY: serving.model_entry(MODEL, [replica])})
    document = json.loads(routes.read_text())
    document["proxy"].update(metrics_store={"url": url}, metrics_retention_days=1, technical_flush_seconds=0.2)
    routes.write_text(json.dumps(document))
    serving.proxy(routes)

    def cells():
        store = open_store(url)
        try:
            return store.read_technical(MODEL, 0, now - day), read_usage(store, MODEL, 0, now - day)
        finally:
            store.close()

    serving.wait_until(lambda: [r for r, _ in cells()[0]] == [HOUR_MS] and [r for r, _ in cells()[1]] == [HOUR_MS])
    (technical,), (usage,) = cells()
    assert (technical[1].bucket_ms, technical[1].requests) == (old_hour, len(old))
    assert (usage[1].bucket_ms, usage[1].cpu_seconds, usage[1].samples) == (old_hour, 6.0 * len(old), len(old))
    store = open_store(url)
    try:
        kept = store.read_technical(MODEL, now - day, now + HOUR_MS)
        assert [(r, b.bucket_ms) for r, b in kept if b.requests] == [(MINUTE_MS, recent[0])]  # within retention
    finally:
        store.close()
