"""What the proxy answers: ``_call_model`` is the whole prediction path, top to bottom.

Requests arrive whole (head and body read by connection.py). /healthz, /metrics and the 404/405
answers are written at once; a prediction runs as a task, which its connection cancels when the
client goes away while the request still waits for a free replica.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from .auth import authorize
from .codec import encode
from .errors import INTERNAL, INTERNAL_BODY, ProxyError, error_body
from .forward import forward
from .live_routes import LiveRoutes
from .metrics import CONTENT_TYPE, UNKNOWN_MODEL, ProxyMetrics
from .metrics_api import PATHS as METRICS_API_PATHS
from .metrics_api import answer as metrics_api_answer
from .monitoring import PAGE as MONITORING_PAGE
from .recorder import Recorder
from .technical import TechnicalMetrics
from .upstream import Upstream
from .wire import parse_call

if TYPE_CHECKING:
    from .connection import Connection, Request

log = logging.getLogger("cmlplan.proxy")

_ROUTES = {b"/model": b"POST", b"/healthz": b"GET", b"/metrics": b"GET"}
_ROUTES.update(dict.fromkeys(METRICS_API_PATHS, b"POST"))
_ROUTES[b"/monitoring"] = b"GET"
_HTML = b"text/html; charset=utf-8"
# the page runs only its own inline script and talks only to this proxy
_PAGE_HEADERS = (
    b"content-security-policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self'\r\nreferrer-policy: no-referrer\r\nx-frame-options: DENY\r\n"
)
CLIENT_GONE = 499  # nginx's code for a client that closed before its answer; metrics only


class Handler:
    def __init__(
        self, routes: LiveRoutes, upstream: Upstream, metrics: ProxyMetrics, recorder: Recorder | None = None
    ) -> None:
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics
        self.recorder = recorder or Recorder(None)
        self.technical = TechnicalMetrics(self.recorder)
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, conn: Connection, request: Request) -> None:
        path, _, query = request.url.partition(b"?")
        method = _ROUTES.get(path)
        if method is None:
            shown = path.decode("latin-1")
            conn.respond(request, 404, error_body("path.not_found", f"no route for {shown}"))
        elif request.method != method:
            body = error_body("method.not_allowed", f"use {method.decode()} {path.decode()}")
            conn.respond(request, 405, body, extra=b"allow: %s\r\n" % method)  # Allow: RFC 9110
        elif path == b"/model":
            self._start(request, self._call_model(conn, request, query))
        elif path in METRICS_API_PATHS:
            self._start(request, self._metrics_api(conn, request, path))
        elif path == b"/monitoring":
            conn.respond(request, 200, MONITORING_PAGE, content_type=_HTML, extra=_PAGE_HEADERS)
        elif path == b"/healthz":
            conn.respond(request, 200, encode({"status": "ok", "generation": self.routes.table.generation}))
        else:
            conn.respond(request, 200, self.metrics.render(), content_type=CONTENT_TYPE)

    def _start(self, request: Request, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        request.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _metrics_api(self, conn: Connection, request: Request, path: bytes) -> None:
        request.at_replica = True  # a write may be under way: let it answer even if the client left
        try:
            status, body = await metrics_api_answer(
                self.routes.table, self.recorder, path, request.authorization, request.body()
            )
        except Exception:
            log.exception("unexpected error in the metrics API")
            self.metrics.internal_error()
            status, body = INTERNAL, INTERNAL_BODY
        conn.respond(request, status, body)

    def count_refusal(self, status: int) -> None:
        """A request refused or abandoned while it was being read (413, 431, 408, 400, 499)."""
        self.metrics.record(UNKNOWN_MODEL, status, monotonic())

    async def _call_model(self, conn: Connection, request: Request, query: bytes) -> None:
        started = monotonic()
        table = self.routes.table  # one snapshot for the whole request
        address = UNKNOWN_MODEL
        model = None
        close = False
        extra = b""
        try:
            if request.authorizations > 1:
                raise ProxyError(400, "request.invalid", "send one Authorization header, not several")
            access_key, payload = parse_call(request.body(), query)
            request.chunks = []
            model = table.find_model(access_key)
            if model is None:
                raise ProxyError(404, "model.not_found", "no model is deployed with this access key")
            address = model.address
            if model.authentication:
                authorize(table, model, request.authorization)
            if model.stopped:
                raise ProxyError(503, "model.stopped", f"the model {model.name!r} is stopped")
            status, reply, tracked = await forward(
                self.upstream, model.pool, payload, table.busy_timeout, table.request_timeout, request
            )
            if tracked is not None:  # durable before the answer leaves; a refusal rides in a header
                extra = await self.recorder.prediction(model, tracked)
        except ProxyError as error:
            status, reply, close = error.status, error.body(), error.close
        except asyncio.CancelledError:  # the client left while waiting for a replica
            self.metrics.record(address, CLIENT_GONE, started)
            return
        except Exception:
            log.exception("%s: unexpected error while handling a prediction", address)
            self.metrics.internal_error()
            status, reply, close = INTERNAL, INTERNAL_BODY, True
        conn.respond(request, status, reply, close=close, extra=extra)
        self.metrics.record(address, status, started)
        if model is not None:
            self.technical.record(model, request.replica, status, monotonic() - started, request.size, len(reply))

    async def shut_down(self) -> None:
        """Wait for predictions still running (their connections were asked to close after them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
