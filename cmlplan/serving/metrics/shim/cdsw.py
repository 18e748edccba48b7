"""``import cdsw`` for model code written for CML: the metrics calls map to cmlplan's SDK.

The replica puts this directory on sys.path, so ``@cdsw.model_metrics`` and ``cdsw.track_metric``
run unchanged. Only the model-metrics part of CML's ``cdsw`` module exists here.
"""

from cmlplan.serving.metrics import (
    MetricsError,
    model_metrics,
    read_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
    track_metrics,
)

__all__ = [
    "MetricsError",
    "model_metrics",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_metric",
    "track_metrics",
]
