"""Replica CPU and memory cells: proxies merge, minutes roll up into hours exactly, and the
technical answer carries them beside the request figures (idle replicas included)."""

import pytest

from cmlplan.serving.store import open_store
from cmlplan.serving.store.technical import HOUR_MS, MINUTE_MS, Bucket
from cmlplan.serving.store.usage import UsageCell, put_usage, read_usage, roll_up_usage, technical_cells

MODEL = "model.churn/risk"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = f"sqlite:{tmp_path / 'metrics.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")
    store = open_store(url)
    store.migrate()
    yield store
    store.close()


def usage(minute: int, cpu: float, wall: float, memory: list[int], replica: str = "r0") -> UsageCell:
    cell = UsageCell(MODEL, "churn", replica, minute * MINUTE_MS)
    cell.add_cpu(cpu, wall)
    for sample in memory:
        cell.add_memory(sample, 512 << 20, 1.5)
    return cell


def test_a_cell_reads_as_cores_and_mean_memory():
    cell = usage(0, cpu=30.0, wall=60.0, memory=[100, 300])
    assert cell.summary() == {
        "cpu_cores": 0.5,
        "memory_bytes": 200,
        "memory_max_bytes": 300,
        "memory_limit_bytes": 512 << 20,
        "cpu_limit_cores": 1.5,
    }
    empty = UsageCell(MODEL, "churn", "r0", 0).summary()
    assert set(empty.values()) == {None}


def test_two_proxies_merge_and_a_rewrite_replaces_not_adds(store):
    put_usage(store, "proxy-a", [usage(10, 5.0, 10.0, [100])])
    put_usage(store, "proxy-a", [usage(10, 10.0, 20.0, [100, 100])])  # the running total, rewritten
    put_usage(store, "proxy-b", [usage(10, 9.0, 20.0, [400]), usage(10, 1.0, 10.0, [50], replica="r1")])
    store.commit()
    cells = {c.replica: (resolution, c) for resolution, c in read_usage(store, MODEL, 0, 20 * MINUTE_MS)}
    resolution, r0 = cells["r0"]
    assert resolution == MINUTE_MS
    assert (r0.cpu_seconds, r0.wall_seconds, r0.samples, r0.memory_max) == (19.0, 40.0, 3, 400)
    assert r0.summary()["cpu_cores"] == pytest.approx(19 / 40) and r0.summary()["memory_bytes"] == 200
    assert [c.replica for _, c in read_usage(store, MODEL, 0, 20 * MINUTE_MS, replica="r1")] == ["r1"]


def test_roll_up_folds_old_minutes_into_hours_and_keeps_every_sum(store):
    put_usage(store, "proxy-a", [usage(m, 0.5 * m, 10.0, [m * 1000]) for m in range(0, 120, 7)])
    put_usage(store, "proxy-a", [usage(200, 1.0, 10.0, [5])])  # newer than the cutoff: stays a minute
    store.commit()
    before = read_usage(store, MODEL, 0, 10 * HOUR_MS)
    folded = roll_up_usage(store, 2 * HOUR_MS)
    store.commit()
    after = read_usage(store, MODEL, 0, 10 * HOUR_MS)
    assert folded == len(range(0, 120, 7))
    assert [(r, c.bucket_ms) for r, c in after] == [(HOUR_MS, 0), (HOUR_MS, HOUR_MS), (MINUTE_MS, 200 * MINUTE_MS)]
    for field in ("cpu_seconds", "wall_seconds", "memory_sum", "samples"):
        assert sum(getattr(c, field) for _, c in after) == pytest.approx(sum(getattr(c, field) for _, c in before))
    assert after[1][1].memory_max == max(m * 1000 for m in range(0, 120, 7) if m >= 60)
    assert roll_up_usage(store, 2 * HOUR_MS) == 0


def test_technical_cells_carry_cpu_and_memory_beside_requests(store):
    busy = Bucket(MODEL, "churn", "r0", 3 * MINUTE_MS)
    busy.add(False, 0.01, 100, 40)
    store.put_technical("proxy-a", [busy])
    put_usage(store, "proxy-a", [usage(3, 6.0, 12.0, [2048]), usage(3, 0.6, 12.0, [1024], replica="idle")])
    put_usage(store, "proxy-a", [usage(4, 3.0, 12.0, [2048])])
    store.commit()
    cells = technical_cells(store, MODEL, 0, 10 * MINUTE_MS)
    assert [(c["start_ms"], c["replica"], c["requests"], c["cpu_cores"], c["memory_bytes"]) for c in cells] == [
        (3 * MINUTE_MS, "idle", 0, 0.05, 1024),  # served nothing, still charted
        (3 * MINUTE_MS, "r0", 1, 0.5, 2048),
        (4 * MINUTE_MS, "r0", 0, 0.25, 2048),
    ]
    assert cells[1]["p50_ms"] > 0 and cells[0]["p50_ms"] is None
    only_requests = Bucket(MODEL, "churn", "r9", 5 * MINUTE_MS)
    only_requests.add(True, 0.02, 10, 10)
    store.put_technical("proxy-a", [only_requests])
    store.commit()
    (late,) = technical_cells(store, MODEL, 5 * MINUTE_MS, 6 * MINUTE_MS)
    assert (late["failures"], late["cpu_cores"], late["memory_bytes"]) == (1, None, None)
    assert [c["replica"] for c in technical_cells(store, MODEL, 0, 10 * MINUTE_MS, replica="idle")] == ["idle"]
