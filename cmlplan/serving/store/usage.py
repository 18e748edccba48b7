"""Replica CPU and memory in the store: one-minute cells per model and replica, hours past the retention.

A cell keeps sums, not averages, so the cells of several proxy processes (each polls every
replica) and sixty minutes rolled into an hour merge exactly: CPU is ``cpu_seconds`` used over
``wall_seconds`` measured (cores = the ratio), memory the sum and count of samples (the mean),
their maximum, and the latest limits the replica reported. Like ``technical``, each proxy writes
its own row of a cell with its running totals, so a flush repeated after a failure does no harm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .technical import HOUR_MS, MINUTE_MS, Bucket

if TYPE_CHECKING:
    from .backend import Store

_COLUMNS = (
    "model, project, replica, bucket_ms, cpu_seconds, wall_seconds, memory_sum, samples, memory_max, "
    "memory_limit, cpu_limit"
)


@dataclass(slots=True)
class UsageCell:
    """One (model, replica, bucket start) cell of CPU and memory, as one proxy sampled it."""

    model: str
    project: str
    replica: str
    bucket_ms: int
    cpu_seconds: float = 0.0  # CPU time the replica used ...
    wall_seconds: float = 0.0  # ... over this much wall-clock time between samples
    memory_sum: float = 0.0
    samples: int = 0
    memory_max: int = 0
    memory_limit: int | None = None
    cpu_limit: float | None = None

    def add_cpu(self, cpu_seconds: float, wall_seconds: float) -> None:
        self.cpu_seconds += cpu_seconds
        self.wall_seconds += wall_seconds

    def add_memory(self, memory_bytes: int, memory_limit: int | None, cpu_limit: float | None) -> None:
        self.memory_sum += memory_bytes
        self.samples += 1
        self.memory_max = max(self.memory_max, memory_bytes)
        self.memory_limit = memory_limit
        self.cpu_limit = cpu_limit

    def merge(self, other: UsageCell) -> None:
        self.cpu_seconds += other.cpu_seconds
        self.wall_seconds += other.wall_seconds
        self.memory_sum += other.memory_sum
        self.samples += other.samples
        self.memory_max = max(self.memory_max, other.memory_max)
        if other.memory_limit is not None:
            self.memory_limit = other.memory_limit
        if other.cpu_limit is not None:
            self.cpu_limit = other.cpu_limit

    def copy(self) -> UsageCell:
        return UsageCell(
            self.model, self.project, self.replica, self.bucket_ms, self.cpu_seconds, self.wall_seconds,
            self.memory_sum, self.samples, self.memory_max, self.memory_limit, self.cpu_limit,
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The figures a person reads, merged into the technical cell of the same replica and time."""
        return {
            "cpu_cores": round(self.cpu_seconds / self.wall_seconds, 4) if self.wall_seconds > 0 else None,
            "memory_bytes": round(self.memory_sum / self.samples) if self.samples else None,
            "memory_max_bytes": self.memory_max if self.samples else None,
            "memory_limit_bytes": self.memory_limit,
            "cpu_limit_cores": self.cpu_limit,
        }


EMPTY = UsageCell("", "", "", 0).summary()  # a cell no sample reached: every figure null


def put_usage(store: Store, proxy: str, cells: list[UsageCell], resolution_ms: int = MINUTE_MS) -> None:
    """Write this proxy's totals of these cells, replacing what it wrote for them before."""
    store.executemany(
        f"INSERT INTO replica_usage (proxy, resolution_ms, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (model, replica, proxy, resolution_ms, bucket_ms) DO UPDATE SET "
        "cpu_seconds = excluded.cpu_seconds, wall_seconds = excluded.wall_seconds, "
        "memory_sum = excluded.memory_sum, samples = excluded.samples, memory_max = excluded.memory_max, "
        "memory_limit = excluded.memory_limit, cpu_limit = excluded.cpu_limit",
        [
            (proxy, resolution_ms, c.model, c.project, c.replica, c.bucket_ms, c.cpu_seconds, c.wall_seconds,
             c.memory_sum, c.samples, c.memory_max, c.memory_limit, c.cpu_limit)
            for c in cells
        ],
    )  # fmt: skip


def read_usage(
    store: Store, model: str, since_ms: int, until_ms: int, replica: str | None = None
) -> list[tuple[int, UsageCell]]:
    """(resolution_ms, cell) per replica and cell in [since, until), every proxy merged, in time order."""
    where = "model = ? AND bucket_ms >= ? AND bucket_ms < ?"
    params: list[Any] = [model, since_ms, until_ms]
    if replica is not None:
        where += " AND replica = ?"
        params.append(replica)
    rows = store.execute(f"SELECT resolution_ms, {_COLUMNS} FROM replica_usage WHERE {where}", params).fetchall()
    cells: dict[tuple[int, str, int], UsageCell] = {}
    for resolution, *fields in rows:
        cell = _cell(fields)
        key = (int(resolution), cell.replica, cell.bucket_ms)
        if key in cells:
            cells[key].merge(cell)
        else:
            cells[key] = cell
    return [(key[0], cells[key]) for key in sorted(cells, key=lambda k: (k[2], k[1]))]


def roll_up_usage(store: Store, before_ms: int) -> int:
    """Fold minute cells older than before_ms into hour cells; returns the minute rows folded."""
    rows = store.execute(
        f"SELECT proxy, {_COLUMNS} FROM replica_usage WHERE resolution_ms = ? AND bucket_ms < ?",
        (MINUTE_MS, before_ms),
    ).fetchall()
    if not rows:
        return 0
    hours: dict[tuple[str, str, str, int], UsageCell] = {}
    for proxy, *fields in rows:
        minute = _cell(fields)
        hour = minute.bucket_ms - minute.bucket_ms % HOUR_MS
        key = (proxy, minute.model, minute.replica, hour)
        if key not in hours:
            existing = store.execute(
                f"SELECT {_COLUMNS} FROM replica_usage "
                "WHERE proxy = ? AND model = ? AND replica = ? AND resolution_ms = ? AND bucket_ms = ?",
                (proxy, minute.model, minute.replica, HOUR_MS, hour),
            ).fetchone()
            hours[key] = _cell(existing) if existing else UsageCell(minute.model, minute.project, minute.replica, hour)
        hours[key].merge(minute)
    by_proxy: dict[str, list[UsageCell]] = {}
    for (proxy, *_rest), cell in hours.items():
        by_proxy.setdefault(proxy, []).append(cell)
    for proxy, cells in by_proxy.items():
        put_usage(store, proxy, cells, HOUR_MS)
    store.execute("DELETE FROM replica_usage WHERE resolution_ms = ? AND bucket_ms < ?", (MINUTE_MS, before_ms))
    return len(rows)


def technical_cells(
    store: Store, model: str, since_ms: int, until_ms: int, replica: str | None = None
) -> list[dict[str, Any]]:
    """What ``/metrics/technical`` answers: request figures and CPU/memory per replica and cell.

    A replica that served nothing in a minute still has its CPU and memory (and zero requests);
    a cell without samples has null CPU and memory.
    """
    merged: dict[tuple[int, str, int], dict[str, Any]] = {}
    for resolution, bucket in store.read_technical(model, since_ms, until_ms, replica):
        merged[(resolution, bucket.replica, bucket.bucket_ms)] = bucket.summary(resolution) | EMPTY
    for resolution, cell in read_usage(store, model, since_ms, until_ms, replica):
        key = (resolution, cell.replica, cell.bucket_ms)
        if key not in merged:
            idle = Bucket(cell.model, cell.project, cell.replica, cell.bucket_ms)
            merged[key] = idle.summary(resolution)
        merged[key].update(cell.summary())
    return [merged[key] for key in sorted(merged, key=lambda k: (k[2], k[1]))]


def _cell(fields: Any) -> UsageCell:
    model, project, replica, bucket_ms, cpu, wall, memory_sum, samples, memory_max, memory_limit, cpu_limit = fields
    return UsageCell(
        model, project, replica, int(bucket_ms), float(cpu), float(wall), float(memory_sum), int(samples),
        int(memory_max), None if memory_limit is None else int(memory_limit),
        None if cpu_limit is None else float(cpu_limit),
    )  # fmt: skip
