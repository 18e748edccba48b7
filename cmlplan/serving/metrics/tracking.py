"""Metrics tracked by model code during one prediction, attached to that prediction's UUID.

The replica opens a ``Prediction`` around each call on its worker thread; ``track_metric`` and
``track_metrics`` add to it. Values are checked at once (JSON, at most ``MAX_KEYS`` keys, at most
``MAX_BYTES`` encoded) so the model sees the error where it made it, not a lost write later.
The collected metrics travel back to the proxy with the reply; the proxy writes them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

MAX_KEYS = 50
MAX_BYTES = 64 * 1024
MAX_KEY_LENGTH = 200


class MetricsError(ValueError):
    """A metric that cannot be tracked or stored; the message says which and why."""


class Prediction:
    """The metrics of one prediction; ``recorded`` means "store it even with no metrics"."""

    __slots__ = ("uuid", "metrics", "recorded", "_text", "_checked")

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.metrics: dict[str, Any] = {}
        self.recorded = False
        self._text = "{}"  # the metrics as checked by the last track_metrics: encoded once
        self._checked: dict[str, Any] | None = None

    def encoded(self, replica_id: str) -> bytes | None:
        """The header value the proxy reads (ASCII JSON), or None when there is nothing to store."""
        if not self.metrics and not self.recorded:
            return None
        text = self._text if self.metrics is self._checked else _encode(self.metrics, "metrics")
        return f'{{"uuid":{json.dumps(self.uuid)},"replica":{json.dumps(replica_id)},"metrics":{text}}}'.encode()

    def replace(self, metrics: dict[str, Any], text: str) -> None:
        """Keep checked metrics with their compact JSON, so the reply does not encode them again."""
        self.metrics = self._checked = metrics
        self._text = text


_local = threading.local()


def begin(uuid: str) -> Prediction:
    """Start collecting for the prediction about to run on this thread."""
    prediction = Prediction(uuid)
    _local.current = prediction
    return prediction


def finish() -> Prediction | None:
    prediction = getattr(_local, "current", None)
    _local.current = None
    return prediction


def current() -> Prediction | None:
    """The prediction running on this thread (inside a replica), else None."""
    return getattr(_local, "current", None)


def check_metrics(metrics: Any, where: str = "metrics") -> dict[str, Any]:
    """Validate a metrics dict as the store takes it; returns it. Raises MetricsError."""
    _checked_text(metrics, where)
    return metrics


def _checked_text(metrics: Any, where: str) -> str:
    """The compact JSON of a valid metrics dict. Raises MetricsError."""
    if not isinstance(metrics, dict):
        raise MetricsError(f"{where} must be a dict of name -> JSON value, not {type(metrics).__name__}")
    if len(metrics) > MAX_KEYS:
        raise MetricsError(f"{where} has {len(metrics)} keys; at most {MAX_KEYS} are allowed")
    for key in metrics:
        _check_key(key)
    text = _encode(metrics, where)
    if len(text) > MAX_BYTES:
        raise MetricsError(f"{where} take {len(text)} bytes as JSON; at most {MAX_BYTES} are allowed")
    return text


def track_metric(key: str, value: Any) -> None:
    """Attach ``key = value`` to the current prediction (only inside a model function)."""
    track_metrics({key: value})


def track_metrics(metrics: dict[str, Any]) -> None:
    """Attach several metrics to the current prediction; later values of a key replace earlier ones."""
    prediction = current()
    if prediction is None:
        raise MetricsError(
            "track_metric(s) only works inside a model function served by a replica; "
            "use track_delayed_metrics(metrics, prediction_uuid) from a job"
        )
    if not isinstance(metrics, dict):
        raise MetricsError(f"metrics must be a dict of name -> JSON value, not {type(metrics).__name__}")
    merged = {**prediction.metrics, **metrics}
    prediction.replace(merged, _checked_text(merged, f"the metrics of prediction {prediction.uuid}"))


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key:
        raise MetricsError(f"a metric name must be a non-empty string, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise MetricsError(f"metric name {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")


def _encode(metrics: dict[str, Any], where: str) -> str:
    try:
        return json.dumps(metrics, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        bad = next((k for k, v in metrics.items() if not _is_json(v)), None)
        which = f"metric {bad!r}" if bad is not None else where
        raise MetricsError(f"{which} is not a JSON value (numbers, strings, lists, dicts): {exc}") from None


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True
