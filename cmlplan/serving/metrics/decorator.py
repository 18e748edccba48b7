"""``@model_metrics``: the reply becomes ``{"uuid": ..., "prediction": ...}``, the shape CML clients read.

The UUID is the prediction's own, so a client can later send ground truth for it with
``track_delayed_metrics``; the prediction is stored even when the function tracks nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .ids import new_prediction_id
from .tracking import current


def model_metrics(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        prediction = current()
        if prediction is not None:
            prediction.recorded = True
            prediction_uuid = prediction.uuid
        else:  # called outside a replica (a notebook, a unit test): nothing is stored
            prediction_uuid = new_prediction_id()
        return {"uuid": prediction_uuid, "prediction": function(*args, **kwargs)}

    return wrapper
