"""The proxy's raw ASGI app. ``_call_model`` is the whole request path, top to bottom."""

import json
from time import monotonic

from .auth import authorize
from .errors import ClientGone, ProxyError, error_body
from .forward import forward
from .live_routes import LiveRoutes
from .metrics import CONTENT_TYPE, UNKNOWN_MODEL, ProxyMetrics
from .responses import Receive, Scope, Send, send_json, send_text
from .upstream import Upstream
from .wire import parse_call, read_body

_ROUTES = {"/model": "POST", "/healthz": "GET", "/metrics": "GET"}


class ProxyApp:
    def __init__(self, routes: LiveRoutes, upstream: Upstream, metrics: ProxyMetrics) -> None:
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = _ROUTES.get(path)
        if method is None:
            await send_json(send, 404, error_body("path.not_found", f"no route for {path}"))
        elif scope["method"] != method:
            body = error_body("method.not_allowed", f"use {method} {path}")
            await send_json(send, 405, body, extra=((b"allow", method.encode()),))  # Allow: RFC 9110
        elif path == "/model":
            await self._call_model(scope, receive, send)
        elif path == "/healthz":
            body = json.dumps({"status": "ok", "generation": self.routes.table.generation}).encode()
            await send_json(send, 200, body)
        else:
            await send_text(send, 200, self.metrics.render(), CONTENT_TYPE)

    async def _call_model(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = monotonic()
        table = self.routes.table  # one snapshot for the whole request
        address = UNKNOWN_MODEL
        try:
            headers = dict(scope["headers"])
            body = await read_body(receive, headers.get(b"content-length"), table.max_request_bytes)
            access_key, request = parse_call(body, scope["query_string"])
            model = table.find_model(access_key)
            if model is None:
                raise ProxyError(404, "model.not_found", "no model is deployed with this access key")
            address = model.address
            if model.authentication:
                authorize(table, model, headers.get(b"authorization"))
            if model.stopped:
                raise ProxyError(503, "model.stopped", f"the model {model.name!r} is stopped")
            payload = json.dumps(request, separators=(",", ":")).encode()
            status, reply = await forward(
                self.upstream, model.pool, payload, table.busy_timeout, table.request_timeout
            )
            await send_json(send, status, reply)
        except ProxyError as error:
            status = error.status
            await send_json(send, status, error.body(), close=error.close)
        except ClientGone:
            status = 499
        self.metrics.record(address, status, started)
