"""The proxy's side of the metrics store: open it at start, write through the writer, read off the loop.

When the store cannot be opened (a read-only directory, a database that refuses us) the proxy
still serves predictions; every metrics write and read answers the reason instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..store import PredictionRow, Store, StoreError, open_store
from ..store.backend import SQLITE_PREFIX, describe
from ..store.writer import StoreWriter
from .codec import decode, encode
from .routes import ModelRoute, RoutingTable

log = logging.getLogger("cmlplan.proxy")

ERROR_HEADER = b"x-cmlplan-metrics-error"
# Calls waiting per replica from which a tracked prediction's commit may linger (writer.LINGER_SECONDS,
# 1 ms): a replica answers a call in ~0.1-0.3 ms here, so 4 waiting each keep them busy meanwhile;
# with fewer, the clients waiting on the commit are the ones the replicas would serve next.
LINGER_QUEUE_PER_REPLICA = 4


def store_url(table: RoutingTable, routes_path: Path) -> str | None:
    """The store's URL from the routing table (a DSN from the environment). Raises StoreError.

    A relative SQLite path is relative to the routing file's folder, so providers can say "beside
    the routes" without knowing where a container mounts it.
    """
    spec = table.metrics_store
    if spec is None:
        return None
    if "url" in spec:
        url = spec["url"]
        if url.startswith(SQLITE_PREFIX) and not Path(url[len(SQLITE_PREFIX) :]).is_absolute():
            return SQLITE_PREFIX + str(routes_path.resolve().parent / url[len(SQLITE_PREFIX) :])
        return url
    name = spec["dsn_env"]
    dsn = os.environ.get(name)
    if not dsn:
        raise StoreError(f"the metrics store's DSN variable {name} is not set in the proxy's environment")
    return dsn


class Recorder(Collector):
    def __init__(self, url: str | None) -> None:
        self.url = url
        self.error: str | None = None if url else "this proxy has no metrics store configured"
        self._writer: StoreWriter | None = None
        self._reader: Store | None = None
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmlplan-metrics-read")

    def start(self) -> None:
        if self.url is None:
            return
        url = self.url
        writer = StoreWriter(lambda: open_store(url))
        try:
            writer.start()
            self._reader = self._reads.submit(open_store, url).result()
        except StoreError as exc:
            self.error = str(exc)
            log.error(
                "metrics store %s unavailable, predictions are served without it: %s", describe(url), exc
            )
            writer.stop()
            return
        self._writer = writer
        log.info("metrics store: %s", describe(url))

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.stop()
        self._reads.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()

    def track(
        self, route: ModelRoute, tracked: bytes, done: Callable[[bytes], None], queued_per_replica: float = 0.0
    ) -> None:
        """Store what the model tracked, then ``done(header lines to add)``: empty, or the refusal.

        ``done`` runs on the loop once the row is committed (or refused), so the answer leaves
        only after its metrics are durable; it may run before this returns. With enough calls
        waiting for the model's replicas to keep them busy meanwhile, the commit lingers for more
        rows (LINGER_QUEUE_PER_REPLICA, writer.LINGER_SECONDS).
        """
        writer = self._writer
        if writer is None:
            done(_error_line(self.error or "the metrics store is not open"))
            return
        try:
            document, _ = decode(tracked)
            metrics = document["metrics"]
            row = PredictionRow(
                str(document["uuid"]),
                route.project,
                route.address,
                route.deployment,
                route.build,
                str(document.get("replica", "")),
                int(time.time() * 1000),
                _compact(metrics),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("%s: a replica sent tracked metrics that are not {uuid, metrics}", route.address)
            done(_error_line("the replica sent tracked metrics the proxy cannot read"))
            return

        def settled(_result: Any, error: BaseException | None) -> None:
            done(b"" if error is None else _error_line(str(error)))

        writer.put(row, settled, queued_per_replica >= LINGER_QUEUE_PER_REPLICA)

    @property
    def writable(self) -> bool:
        return self._writer is not None

    async def write(self, operation: Any) -> Any:
        if self._writer is None:
            raise StoreError(self.error or "the metrics store is not open")
        return await self._writer.submit(operation)

    async def read(self, **query: Any) -> bytes:
        """The read_metrics answer as JSON bytes, read on the reader thread."""
        reader = self._reader
        if reader is None:
            raise StoreError(self.error or "the metrics store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: _read(reader, query))

    async def read_with(self, query: Any) -> Any:
        """query(store) on the reader thread."""
        reader = self._reader
        if reader is None:
            raise StoreError(self.error or "the metrics store is not open")

        def run() -> Any:
            try:
                return query(reader)
            finally:
                reader.rollback()

        return await asyncio.get_running_loop().run_in_executor(self._reads, run)

    def collect(self) -> Iterator[Metric]:
        """Group commit at work: writes per commit is writes / commits."""
        writer = self._writer
        if writer is None:
            return
        yield CounterMetricFamily(
            "cmlplan_store_commits", "Transactions the metrics store writer committed (or rolled back).",
            value=writer.batches,
        )
        yield CounterMetricFamily(
            "cmlplan_store_writes", "Writes (tracked predictions and others) in those transactions.",
            value=writer.operations,
        )

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())


def _read(reader: Store, query: dict[str, Any]) -> bytes:
    try:
        return reader.read_json(**query)
    finally:
        reader.rollback()  # end the read transaction so the next read sees new commits


def _compact(metrics: Any) -> str:
    """The metrics as the store keeps them: compact JSON, re-encoded so nothing but JSON is stored."""
    if not isinstance(metrics, dict):
        raise TypeError("metrics must be an object")
    return encode(metrics).decode()


def _error_line(message: str) -> bytes:
    text = message.replace("\r", " ").replace("\n", " ")[:500]
    return ERROR_HEADER + b": " + text.encode("ascii", "replace") + b"\r\n"
