"""The model metrics SDK: imported by model code in a replica and by jobs; imports nothing of the control plane.

Inside a model function: ``track_metric``/``track_metrics`` and ``@model_metrics``. In a job:
``track_delayed_metrics``, ``track_aggregate_metrics`` and ``read_metrics`` over the proxy's API.
"""

from .client import (
    KEY_ENV,
    URL_ENV,
    MetricsClient,
    read_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
)
from .decorator import model_metrics
from .tracking import MAX_BYTES, MAX_KEYS, MetricsError, check_metrics, track_metric, track_metrics

__all__ = [
    "KEY_ENV",
    "MAX_BYTES",
    "MAX_KEYS",
    "URL_ENV",
    "MetricsClient",
    "MetricsError",
    "check_metrics",
    "model_metrics",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_metric",
    "track_metrics",
]
