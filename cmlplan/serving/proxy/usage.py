"""Replica CPU and memory: the proxy polls every replica's ``GET /usage`` and keeps minute cells.

Each replica samples itself with the source its provider chose (psutil over its process tree
locally, its container's cgroup on Docker and Kubernetes: ``replica/usage.py``), so nothing here
needs the Docker socket or the host's /proc, and the proxy stays the store's single writer.

Every ``interval`` seconds (the routing table's ``technical_flush_seconds``) a task asks each
replica of each running model for one sample, over a keep-alive connection of its own (never the
connection predictions use), at most ``PARALLEL`` at a time and ``POLL_TIMEOUT`` each; /usage is
answered on the replica's event loop, so a replica busy with a prediction answers too. The CPU
counter is cumulative: two samples of the same replica process give the CPU seconds used over the
wall time between them, added to the minute cell with the memory sample, then written like the
request counts (``technical.py``). A replica that answers 404 (an older runtime, or sampling off)
is not asked again while it stays in the routing table. Cells older than the retention are
rolled up into hours once an hour. The latest sample of each replica is exported to Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..store import StoreError
from ..store.technical import HOUR_MS, MINUTE_MS
from ..store.usage import UsageCell, put_usage, roll_up_usage
from .recorder import Recorder
from .routes import RoutingTable

log = logging.getLogger("cmlplan.proxy")

POLL_TIMEOUT = 2.0
PARALLEL = 16
MAX_ANSWER = 65536
DAY_MS = 86_400_000
LABELS = ("model", "project", "replica")


class UsageProbe:
    """One keep-alive HTTP/1.1 connection to a replica, for ``GET /usage`` only."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._request = f"GET /usage HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self) -> tuple[int, bytes]:
        """(status, body); a kept connection the replica closed meanwhile is retried once, fresh."""
        while True:
            fresh = self._writer is None
            if self._reader is None or self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=MAX_ANSWER)
            try:
                self._writer.write(self._request)
                return await self._answer(self._reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if fresh:
                    raise

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length, close = None, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None or not 0 <= length <= MAX_ANSWER:
            raise ValueError("the replica's /usage answer has no usable content-length")
        body = await reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()


@dataclass(slots=True)
class Latest:
    """The last sample of one replica (of one process of it: ``instance``), for deltas and Prometheus."""

    project: str
    instance: str
    cpu_seconds: float
    at: float  # monotonic seconds when it arrived
    memory_bytes: int
    memory_limit: int | None
    cpu_limit: float | None
    cores: float | None  # CPU cores used since the sample before, None on the first


class ReplicaUsage(Collector):
    def __init__(
        self,
        table: Callable[[], RoutingTable],
        recorder: Recorder,
        interval: float = 10.0,
        retention_days: float = 14.0,
    ) -> None:
        self.table = table
        self.recorder = recorder
        self.interval = interval
        self.retention_ms = int(retention_days * DAY_MS)
        self.proxy_id = f"{socket.gethostname()}:{os.getpid()}"
        self._cells: dict[tuple[str, str, int], UsageCell] = {}
        self._dirty: set[tuple[str, str, int]] = set()
        self._latest: dict[tuple[str, str], Latest] = {}  # (model, replica) -> last sample
        self._probes: dict[tuple[str, str], UsageProbe] = {}  # (model, replica): one connection each
        self._silent: set[str] = set()  # URLs that answered 404: no /usage there
        self._warned: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_rollup = float("-inf")  # the first flush rolls up, however long the machine has been up

    # ------------------------------------------------------------ sampling

    def record(self, model: str, project: str, replica: str, sample: dict[str, object], now: float) -> None:
        """Add one /usage answer to its minute cell. Raises ValueError when it is not one."""
        instance, cpu, memory = sample["instance"], sample["cpu_seconds"], sample["memory_bytes"]
        memory_limit, cpu_limit = sample.get("memory_limit_bytes"), sample.get("cpu_limit_cores")
        if not isinstance(instance, str) or not _number(cpu) or not _number(memory) or cpu < 0 or memory < 0:
            raise ValueError("a /usage answer needs instance, cpu_seconds and memory_bytes")
        if not (memory_limit is None or _number(memory_limit)) or not (cpu_limit is None or _number(cpu_limit)):
            raise ValueError("a /usage answer's limits must be numbers or null")
        now_ms = int(time.time() * 1000)
        key = (model, replica, now_ms - now_ms % MINUTE_MS)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = UsageCell(model, project, replica, key[2])
        limit = None if memory_limit is None else int(memory_limit)
        cell.add_memory(int(memory), limit, cpu_limit)
        before = self._latest.get((model, replica))
        cores = None
        # CPU from two samples of one process; a new instance (a restart) began its counter again
        if before is not None and before.instance == instance and cpu >= before.cpu_seconds and now > before.at:
            cell.add_cpu(cpu - before.cpu_seconds, now - before.at)
            cores = (cpu - before.cpu_seconds) / (now - before.at)
        self._latest[(model, replica)] = Latest(project, instance, float(cpu), now, int(memory), limit, cpu_limit, cores)
        self._dirty.add(key)

    async def sample_all(self) -> None:
        """One sample of every replica of every running model in the routing table."""
        targets: dict[tuple[str, str], tuple[str, str]] = {}  # (model, replica) -> (project, url)
        for route in self.table().models.values():
            if not route.stopped:
                for replica in route.pool.replicas:
                    targets[(route.address, replica.id)] = (route.project, replica.url)
        urls = {url for _, url in targets.values()}
        for key in [k for k, probe in self._probes.items() if k not in targets or probe.url != targets[k][1]]:
            self._probes.pop(key).close()
        self._silent &= urls
        self._warned &= urls
        for key in [k for k in self._latest if k not in targets]:
            del self._latest[key]
        gate = asyncio.Semaphore(PARALLEL)

        async def one(model: str, replica: str, project: str, url: str) -> None:
            async with gate:
                await self._sample(model, replica, project, url)

        await asyncio.gather(*(one(m, r, p, u) for (m, r), (p, u) in targets.items() if u not in self._silent))

    async def _sample(self, model: str, replica: str, project: str, url: str) -> None:
        probe = self._probes.get((model, replica))
        if probe is None:
            probe = self._probes[(model, replica)] = UsageProbe(url)
        try:
            status, body = await asyncio.wait_for(probe.get(), POLL_TIMEOUT)
            if status == 404:
                self._silent.add(url)
                log.info("%s: replica %s does not report its usage (older runtime?)", model, replica)
                return
            if status != 200:
                raise ValueError(f"GET /usage answered {status}: {body[:200].decode(errors='replace')}")
            sample = json.loads(body)
            if not isinstance(sample, dict):
                raise ValueError("GET /usage answered something other than an object")
            self.record(model, project, replica, sample, time.monotonic())
        except (OSError, TimeoutError, ValueError, KeyError, TypeError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:  # fmt: skip
            probe.close()
            if url not in self._warned:  # once per replica: a dead one is the rollout's business
                self._warned.add(url)
                log.warning("%s: no CPU/memory sample from replica %s: %s", model, replica, str(exc) or type(exc).__name__)
        else:
            self._warned.discard(url)

    # ------------------------------------------------------------ the task, the store

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for probe in self._probes.values():
            probe.close()
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self.sample_all()
            await self.flush()
            if self.recorder.writable and time.monotonic() - self._last_rollup > 3600:
                self._last_rollup = time.monotonic()
                await self.roll_up()
            await asyncio.sleep(self.interval)

    async def flush(self) -> None:
        if not self._dirty or not self.recorder.writable:
            self._forget_past(keep=set())
            return
        keys, self._dirty = self._dirty, set()
        snapshot = [self._cells[k].copy() for k in keys]
        proxy = self.proxy_id
        try:
            await self.recorder.write(lambda store: put_usage(store, proxy, snapshot))
        except StoreError as exc:
            self._dirty |= keys  # the totals are still here: try again next time
            log.error("replica usage: %d cells not written: %s", len(keys), exc)
            return
        self._forget_past(keep=self._dirty)

    async def roll_up(self) -> None:
        cutoff = int(time.time() * 1000) - self.retention_ms
        cutoff -= cutoff % HOUR_MS
        try:
            folded = await self.recorder.write(lambda store: roll_up_usage(store, cutoff))
        except StoreError as exc:
            log.error("replica usage: roll-up failed: %s", exc)
        else:
            if folded:
                log.info("replica usage: rolled %d minute cells into hours", folded)

    def _forget_past(self, keep: set[tuple[str, str, int]]) -> None:
        """Drop cells of past minutes (written, or with no store to write them to)."""
        now_ms = int(time.time() * 1000)
        current = now_ms - now_ms % MINUTE_MS
        for key in [k for k in self._cells if k[2] < current and k not in keep]:
            del self._cells[key]
            self._dirty.discard(key)

    # ------------------------------------------------------------ Prometheus

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "cmlplan_replica_cpu_seconds",
            "CPU time the replica used since its process (or container) started, as it reported it.",
            labels=LABELS,
        )
        cores = GaugeMetricFamily(
            "cmlplan_replica_cpu_cores", "CPU cores the replica used between its last two samples.", labels=LABELS
        )
        memory = GaugeMetricFamily(
            "cmlplan_replica_memory_bytes",
            "Memory the replica uses: resident set locally, working set (usage without inactive file cache) in a container.",
            labels=LABELS,
        )
        memory_limit = GaugeMetricFamily(
            "cmlplan_replica_memory_limit_bytes", "The replica's memory limit.", labels=LABELS
        )
        cpu_limit = GaugeMetricFamily(
            "cmlplan_replica_cpu_limit_cores", "The replica's CPU quota, in cores (containers only).", labels=LABELS
        )
        for (model, replica), latest in sorted(self._latest.items()):
            labels = (model, latest.project, replica)
            cpu.add_metric(labels, latest.cpu_seconds)
            memory.add_metric(labels, latest.memory_bytes)
            if latest.cores is not None:
                cores.add_metric(labels, latest.cores)
            if latest.memory_limit is not None:
                memory_limit.add_metric(labels, latest.memory_limit)
            if latest.cpu_limit is not None:
                cpu_limit.add_metric(labels, latest.cpu_limit)
        yield from (cpu, cores, memory, memory_limit, cpu_limit)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN
