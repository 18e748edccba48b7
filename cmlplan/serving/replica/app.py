"""The replica's raw ASGI app: /healthz, /usage and /predict, one prediction at a time.

A second /predict while one runs is refused at once with 429 ``replica.busy`` (a flag check, no
queue), so the proxy can try another replica instead of waiting behind this one.
"""

import json
import uuid
from functools import partial
from typing import Any

from .loader import ModelFunction
from .prediction import predict_reply
from .responses import Receive, Send, error_body, read_body, send_json
from .usage import UsageReporter
from .worker import PredictionWorker


class ReplicaApp:
    """Serves one loaded model function."""

    def __init__(
        self, predict: ModelFunction, replica_id: str, worker: PredictionWorker, usage: UsageReporter | None = None
    ) -> None:
        self.predict = predict
        self.replica_id = replica_id
        self.worker = worker
        self.usage = usage or UsageReporter("none", replica_id)
        self.busy = False
        self._busy_body = error_body("replica.busy", f"replica {replica_id} is running another prediction")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/predict":
            if method != "POST":
                await send_json(send, 405, error_body("method.not_allowed", "use POST /predict"))
            else:
                await self._predict(receive, send)
        elif path == "/healthz":
            if method != "GET":
                await send_json(send, 405, error_body("method.not_allowed", "use GET /healthz"))
            else:
                await send_json(send, 200, self._health())
        elif path == "/usage":  # answered on the loop, like /healthz, while a prediction runs
            if method != "GET":
                await send_json(send, 405, error_body("method.not_allowed", "use GET /usage"))
            else:
                await send_json(send, *self.usage.answer())
        else:
            await send_json(send, 404, error_body("path.not_found", f"no route for {path}"))

    async def _predict(self, receive: Receive, send: Send) -> None:
        if self.busy:
            await send_json(send, 429, self._busy_body)
            return
        self.busy = True
        try:
            body = await read_body(receive)
            if body is None:
                return
            prediction_id = str(uuid.uuid4())
            status, reply, metrics = await self.worker.run(
                partial(predict_reply, self.predict, body, self.replica_id, prediction_id), prediction_id
            )
        finally:
            self.busy = False
        await send_json(send, status, reply, metrics)

    def _health(self) -> bytes:
        return json.dumps({"status": "ok", "replica_id": self.replica_id, "busy": self.busy}).encode()
