"""Prometheus metrics, recorded off the request path.

A request only appends a tuple to a list (tens of nanoseconds); the tuples are folded into the
prometheus_client counters and histogram when /metrics is scraped, or once the buffer is full so
memory stays bounded without a scraper. Busy replicas are read from the pools at scrape time.
"""

from collections.abc import Callable, Iterable, Iterator
from time import monotonic

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
FLUSH_AT = 4096
UNKNOWN_MODEL = "-"

BusySource = Callable[[], Iterable[tuple[str, int]]]


class ProxyMetrics:
    """Request counts by model address and status code, latency, and busy replicas."""

    def __init__(self, busy_source: BusySource, generation_source: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "cmlplan_proxy_requests_total",
            "Requests answered by the proxy.",
            ("model", "code"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "cmlplan_proxy_request_seconds",
            "Time from request start to answer.",
            ("model",),
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self._internal = Counter(
            "cmlplan_proxy_internal_errors_total",
            "Requests answered 500 proxy.internal: an unexpected error in the proxy itself.",
            registry=self.registry,
        )
        self.connections_source: Callable[[], int] = lambda: 0
        self.registry.register(_LiveState(busy_source, generation_source, lambda: self.connections_source()))
        self._pending: list[tuple[str, int, float]] = []

    def record(self, model: str, status: int, started: float) -> None:
        """Remember one answered request; cheap enough for the hot path."""
        pending = self._pending
        pending.append((model, status, monotonic() - started))
        if len(pending) >= FLUSH_AT:
            self.flush()

    def internal_error(self) -> None:
        self._internal.inc()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for model, status, seconds in pending:
            self._requests.labels(model, str(status)).inc()
            self._latency.labels(model).observe(seconds)

    def render(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges computed at scrape time from the proxy's live state."""

    def __init__(
        self, busy_source: BusySource, generation_source: Callable[[], int], connections: Callable[[], int]
    ) -> None:
        self._busy_source = busy_source
        self._generation_source = generation_source
        self._connections = connections

    def collect(self) -> Iterator[GaugeMetricFamily]:
        busy = GaugeMetricFamily(
            "cmlplan_proxy_replicas_busy", "Replicas running a request from this proxy.", labels=("model",)
        )
        for model, count in self._busy_source():
            busy.add_metric((model,), count)
        yield busy
        yield GaugeMetricFamily(
            "cmlplan_proxy_routes_generation",
            "Generation of the loaded routing table.",
            value=self._generation_source(),
        )
        yield GaugeMetricFamily(
            "cmlplan_proxy_connections_open",
            "Client connections open on this proxy.",
            value=self._connections(),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
