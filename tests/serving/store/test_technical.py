"""Technical cells: several proxies sum, minutes roll up into hours exactly, percentiles from the histogram."""

import pytest

from cmlplan.serving.store import open_store
from cmlplan.serving.store.technical import HOUR_MS, MINUTE_MS, Bucket


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = f"sqlite:{tmp_path / 'metrics.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")
    store = open_store(url)
    store.migrate()
    yield store
    store.close()


def cell(minute: int, latencies: list[float], failures: int = 0, replica: str = "r0") -> Bucket:
    bucket = Bucket("model.churn/risk", "churn", replica, minute * MINUTE_MS)
    for i, seconds in enumerate(latencies):
        bucket.add(i < failures, seconds, 100, 40)
    return bucket


def test_percentiles_come_from_the_histogram_within_its_resolution():
    bucket = cell(0, [i / 1000 for i in range(1, 101)])  # 1 ms .. 100 ms
    summary = bucket.summary(MINUTE_MS)
    assert summary["requests"] == 100 and summary["requests_per_second"] == pytest.approx(100 / 60)
    assert summary["mean_ms"] == pytest.approx(50.5)
    for key, expected in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
        assert summary[key] == pytest.approx(expected, rel=0.05)


def test_two_proxies_sum_and_a_rewrite_replaces_not_adds(store):
    store.put_technical("proxy-a", [cell(10, [0.01] * 3, failures=1)])
    store.put_technical("proxy-a", [cell(10, [0.01] * 4, failures=1)])  # the running total, rewritten
    store.put_technical("proxy-b", [cell(10, [0.02] * 2), cell(10, [0.03], replica="r1")])
    store.commit()
    cells = store.read_technical("model.churn/risk", 0, 20 * MINUTE_MS)
    by_replica = {b.replica: (resolution, b) for resolution, b in cells}
    resolution, r0 = by_replica["r0"]
    assert resolution == MINUTE_MS
    assert (r0.requests, r0.failures, r0.request_bytes, r0.response_bytes) == (6, 1, 600, 240)
    assert by_replica["r1"][1].requests == 1
    assert [b.replica for _, b in store.read_technical("model.churn/risk", 0, 20 * MINUTE_MS, replica="r1")] == ["r1"]


def test_roll_up_folds_old_minutes_into_hours_and_keeps_every_count(store):
    store.put_technical("proxy-a", [cell(m, [0.01 * (m + 1)]) for m in range(0, 120, 7)])
    store.put_technical("proxy-a", [cell(200, [0.5])])  # newer than the cutoff: stays a minute cell
    store.commit()
    before = store.read_technical("model.churn/risk", 0, 10 * HOUR_MS)
    folded = store.roll_up(2 * HOUR_MS)
    store.commit()
    after = store.read_technical("model.churn/risk", 0, 10 * HOUR_MS)
    assert folded == len(range(0, 120, 7))
    assert [(r, b.bucket_ms) for r, b in after] == [(HOUR_MS, 0), (HOUR_MS, HOUR_MS), (MINUTE_MS, 200 * MINUTE_MS)]
    assert sum(b.requests for _, b in after) == sum(b.requests for _, b in before)
    assert sum(b.total_seconds for _, b in after) == pytest.approx(sum(b.total_seconds for _, b in before))
    assert store.roll_up(2 * HOUR_MS) == 0  # nothing left to fold
