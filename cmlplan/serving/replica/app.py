"""The replica's routes: /healthz, /usage and /predict, one prediction at a time.

A second /predict while one runs is refused at once with 429 ``replica.busy`` (a flag check, no
queue), so the proxy can try another replica instead of waiting behind this one. /healthz and
/usage are answered on the event loop while a prediction runs on the worker thread.
"""

import json
from collections.abc import Callable

from ..metrics.ids import new_prediction_id
from .loader import ModelFunction
from .prediction import Reply, predict_reply
from .responses import error_body
from .usage import UsageReporter
from .worker import PredictionWorker

Answer = Callable[[int, bytes, "bytes | None"], None]

_NOT_POST = error_body("method.not_allowed", "use POST /predict")
_NOT_GET = {path: error_body("method.not_allowed", f"use GET {path}") for path in ("/healthz", "/usage")}


class ReplicaApp:
    """Serves one loaded model function; ``handle`` answers each request exactly once."""

    def __init__(
        self, predict: ModelFunction, replica_id: str, worker: PredictionWorker, usage: UsageReporter | None = None
    ) -> None:
        self.predict = predict
        self.replica_id = replica_id
        self.worker = worker
        self.usage = usage or UsageReporter("none", replica_id)
        self.busy = False
        self._busy_body = error_body("replica.busy", f"replica {replica_id} is running another prediction")

    def handle(self, method: bytes, path: bytes, body: bytes, answer: Answer) -> None:
        if path == b"/predict":
            if method != b"POST":
                answer(405, _NOT_POST, None)
            elif self.busy:
                answer(429, self._busy_body, None)
            else:
                self._predict(body, answer)
        elif path == b"/healthz":
            if method == b"GET":
                answer(200, self._health(), None)
            else:
                answer(405, _NOT_GET["/healthz"], None)
        elif path == b"/usage":
            if method == b"GET":
                status, usage = self.usage.answer()
                answer(status, usage, None)
            else:
                answer(405, _NOT_GET["/usage"], None)
        else:
            shown = path.decode("latin-1")
            answer(404, error_body("path.not_found", f"no route for {shown}"), None)

    def _predict(self, body: bytes, answer: Answer) -> None:
        self.busy = True
        prediction_id = new_prediction_id()

        def done(reply: Reply | None, error: BaseException | None) -> None:
            self.busy = False
            if reply is None:  # predict_reply never raises; a worker failure is still answered
                reply = (500, error_body("model.exception", f"{type(error).__name__}: {error}"), None)
            answer(*reply)

        self.worker.submit(lambda: predict_reply(self.predict, body, self.replica_id, prediction_id), prediction_id, done)

    def _health(self) -> bytes:
        return json.dumps({"status": "ok", "replica_id": self.replica_id, "busy": self.busy}).encode()
