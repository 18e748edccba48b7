"""Technical metrics: requests, failures, response time and bytes per model and replica per minute.

Response times are kept as a log histogram (bins ``RATIO`` apart, from 1 µs) rather than samples,
so buckets of several proxy processes, or sixty minutes rolled into an hour, merge exactly and
p50/p95/p99 are read from the merged histogram (within ``RATIO`` of the true value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RATIO = 1.05
_LOG_RATIO = math.log(RATIO)
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def bin_of(seconds: float) -> int:
    return max(0, int(math.log(max(seconds, 1e-6) * 1e6) / _LOG_RATIO))


def bin_value(index: int) -> float:
    """The middle of a bin, in seconds."""
    return RATIO ** (index + 0.5) / 1e6


@dataclass(slots=True)
class Bucket:
    """One (model, replica, bucket start) cell, as one proxy counted it."""

    model: str
    project: str
    replica: str
    bucket_ms: int
    requests: int = 0
    failures: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    total_seconds: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, failed: bool, seconds: float, request_bytes: int, response_bytes: int) -> None:
        self.requests += 1
        self.failures += failed
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes
        self.total_seconds += seconds
        index = bin_of(seconds)
        self.histogram[index] = self.histogram.get(index, 0) + 1

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.request_bytes += other.request_bytes
        self.response_bytes += other.response_bytes
        self.total_seconds += other.total_seconds
        for index, count in other.histogram.items():
            self.histogram[index] = self.histogram.get(index, 0) + count

    def percentile(self, fraction: float) -> float | None:
        total = sum(self.histogram.values())
        if total == 0:
            return None
        rank = math.ceil(fraction * total)
        seen = 0
        for index in sorted(self.histogram):
            seen += self.histogram[index]
            if seen >= rank:
                return bin_value(index)
        return None  # pragma: no cover - rank <= total

    def summary(self, resolution_ms: int) -> dict[str, object]:
        """The figures a person reads: one JSON-ready dict per bucket."""
        mean = self.total_seconds / self.requests if self.requests else None
        return {
            "model": self.model,
            "project": self.project,
            "replica": self.replica,
            "start_ms": self.bucket_ms,
            "resolution_ms": resolution_ms,
            "requests": self.requests,
            "failures": self.failures,
            "requests_per_second": self.requests / (resolution_ms / 1000),
            "mean_ms": None if mean is None else mean * 1000,
            "p50_ms": _ms(self.percentile(0.50)),
            "p95_ms": _ms(self.percentile(0.95)),
            "p99_ms": _ms(self.percentile(0.99)),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
