"""One prediction, from request bytes to response bytes, run on the worker thread.

Parsing, the model call and JSON encoding all happen off the event loop, so a large payload or a
slow ``json.dumps`` never delays /healthz. The success body is encoded exactly once here and the
proxy passes it through to the client unchanged. Metrics the model tracked travel separately, as
the ``x-cmlplan-metrics`` header value (``{"uuid", "replica", "metrics"}``), for the proxy to store.
"""

import json
import logging

from ..metrics import tracking
from ..metrics.ids import new_prediction_id
from .loader import ModelFunction

log = logging.getLogger("cmlplan.replica")

Reply = tuple[int, bytes, bytes | None]  # status, body, tracked metrics


def predict_reply(
    predict: ModelFunction, raw_body: bytes, replica_id: str, prediction_id: str | None = None
) -> Reply:
    """Run the model on the JSON request and return (HTTP status, JSON body, metrics). Never raises.

    Metrics are kept for a failed prediction too: what the model tracked before failing is data.
    """
    prediction_id = prediction_id or new_prediction_id()
    try:
        args = json.loads(raw_body)
    except ValueError as exc:
        body = _error("request.invalid", f"body is not valid JSON: {exc}", replica_id, prediction_id)
        return 400, body, None
    prediction = tracking.begin(prediction_id)
    try:
        value = predict(args)
    except BaseException as exc:  # a model calling sys.exit() must not take the replica down
        log.error("prediction %s failed", prediction_id, exc_info=exc)
        tracking.finish()
        body = _error("model.exception", _describe(exc), replica_id, prediction_id)
        return 500, body, prediction.encoded(replica_id)
    tracking.finish()
    metrics = prediction.encoded(replica_id)
    try:
        body = json.dumps(
            {"success": True, "response": value, "ReplicaID": replica_id, "uuid": prediction_id}
        )
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"{type(exc).__name__}: the model's return value is not JSON serialisable: {exc}"
        log.error("prediction %s returned a value that cannot be encoded: %s", prediction_id, exc)
        return 500, _error("model.exception", message, replica_id, prediction_id), metrics
    return 200, body.encode(), metrics


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _error(code: str, message: str, replica_id: str, prediction_id: str) -> bytes:
    body = {"success": False, "errors": {code: message}, "ReplicaID": replica_id, "uuid": prediction_id}
    return json.dumps(body).encode()
