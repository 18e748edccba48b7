"""Prometheus metrics, folded by the proxy itself: a request costs a dict update and a bisect.

Counts by model and status and the latency histogram's buckets live in plain dicts; a collector
turns them into Prometheus families only when /metrics is scraped. Busy replicas, open connections
and the routing generation are read from the live state at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from time import monotonic

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_MODEL = "-"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

BusySource = Callable[[], Iterable[tuple[str, int]]]


class _Latency:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class ProxyMetrics(Collector):
    """Request counts by model address and status code, latency, internal errors, live gauges."""

    def __init__(self, busy_source: BusySource, generation_source: Callable[[], int]) -> None:
        self._busy_source = busy_source
        self._generation_source = generation_source
        self.connections_source: Callable[[], int] = lambda: 0
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, _Latency] = {}
        self._internal = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, model: str, status: int, started: float) -> None:
        """Count one answered request that started at ``started`` (monotonic)."""
        self.observe(model, status, monotonic() - started)

    def observe(self, model: str, status: int, seconds: float) -> None:
        """Count one answered request that took ``seconds``; cheap enough for the hot path."""
        key = (model, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        latency = self._latency.get(model)
        if latency is None:
            latency = self._latency[model] = _Latency()
        latency.counts[bisect_left(BUCKETS, seconds)] += 1
        latency.total += seconds

    def internal_error(self) -> None:
        self._internal += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "cmlplan_proxy_requests", "Requests answered by the proxy.", labels=("model", "code")
        )
        for (model, status), count in sorted(self._requests.items()):
            requests.add_metric((model, str(status)), count)
        yield requests
        latency = HistogramMetricFamily(
            "cmlplan_proxy_request_seconds", "Time from request start to answer.", labels=("model",)
        )
        for model, data in sorted(self._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), data.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            latency.add_metric((model,), buckets, data.total)
        yield latency
        yield CounterMetricFamily(
            "cmlplan_proxy_internal_errors",
            "Requests answered 500 proxy.internal: an unexpected error in the proxy itself.",
            value=self._internal,
        )
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
            value=self.connections_source(),
        )
