"""Technical metrics counted by the proxy: one-minute cells per model and replica, flushed to the store.

A request costs a dict lookup and a few additions on the loop. Every ``flush_seconds`` the cells
changed since the last flush are handed to the store's writer thread (this proxy's row of a cell is
rewritten with its running totals, so a flush repeated after a failure does no harm); cells of
past minutes are dropped once written. Once an hour, minute cells older than the retention
(14 days unless the routing table says otherwise) are rolled up into hour cells.
Cumulative per-replica counters are also exported to Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..store import StoreError
from ..store.technical import HOUR_MS, MINUTE_MS, Bucket
from .recorder import Recorder
from .routes import ModelRoute

log = logging.getLogger("cmlplan.proxy")

DAY_MS = 86_400_000


class TechnicalMetrics(Collector):
    def __init__(self, recorder: Recorder, flush_seconds: float = 10.0, retention_days: float = 14.0) -> None:
        self.recorder = recorder
        self.flush_seconds = flush_seconds
        self.retention_ms = int(retention_days * DAY_MS)
        self.proxy_id = f"{socket.gethostname()}:{os.getpid()}"
        self._cells: dict[tuple[str, str, int], Bucket] = {}
        self._dirty: set[tuple[str, str, int]] = set()
        self._counts: dict[tuple[str, str, str, int], list[int]] = {}  # requests, request/response bytes
        self._task: asyncio.Task[None] | None = None
        self._last_rollup = 0.0

    def record(self, route: ModelRoute, replica: str, status: int, seconds: float, sent: int, answered: int) -> None:
        now_ms = int(time.time() * 1000)
        minute = now_ms - now_ms % MINUTE_MS
        key = (route.address, replica, minute)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Bucket(route.address, route.project, replica, minute)
        cell.add(status >= 400, seconds, sent, answered)
        self._dirty.add(key)
        counts = self._counts.get((route.address, route.project, replica, status))
        if counts is None:
            counts = self._counts[(route.address, route.project, replica, status)] = [0, 0, 0]
        counts[0] += 1
        counts[1] += sent
        counts[2] += answered

    def start(self) -> None:
        if self.recorder.writable:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()
            if time.monotonic() - self._last_rollup > 3600:
                self._last_rollup = time.monotonic()
                cutoff = int(time.time() * 1000) - self.retention_ms
                cutoff -= cutoff % HOUR_MS
                try:
                    folded = await self.recorder.write(lambda store, before=cutoff: store.roll_up(before))
                except StoreError as exc:
                    log.error("technical metrics: roll-up failed: %s", exc)
                else:
                    if folded:
                        log.info("technical metrics: rolled %d minute cells into hours", folded)

    async def flush(self) -> None:
        if not self._dirty:
            return
        keys, self._dirty = self._dirty, set()
        snapshot = [_copy(self._cells[k]) for k in keys]
        proxy = self.proxy_id
        try:
            await self.recorder.write(lambda store: store.put_technical(proxy, snapshot))
        except StoreError as exc:
            self._dirty |= keys  # try again next time; the totals are still here
            log.error("technical metrics: %d cells not written: %s", len(keys), exc)
            return
        now_ms = int(time.time() * 1000)
        current = now_ms - now_ms % MINUTE_MS
        for key in [k for k in self._cells if k[2] < current and k not in self._dirty]:
            del self._cells[key]

    def collect(self) -> Iterator[Metric]:
        labels = ("model", "project", "replica", "code")
        families = (
            CounterMetricFamily("cmlplan_replica_requests", "Requests answered, by replica.", labels=labels),
            CounterMetricFamily("cmlplan_replica_request_bytes", "Request body bytes, by replica.", labels=labels),
            CounterMetricFamily("cmlplan_replica_response_bytes", "Response body bytes, by replica.", labels=labels),
        )
        for (model, project, replica, status), values in sorted(self._counts.items()):
            for family, value in zip(families, values, strict=True):
                family.add_metric((model, project, replica, str(status)), value)
        yield from families


def _copy(cell: Bucket) -> Bucket:
    return Bucket(
        cell.model, cell.project, cell.replica, cell.bucket_ms, cell.requests, cell.failures,
        cell.request_bytes, cell.response_bytes, cell.total_seconds, dict(cell.histogram),
    )  # fmt: skip
