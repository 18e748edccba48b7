"""What the proxy answers; a prediction is a ``ModelCall`` (call.py), read top to bottom there.

Requests arrive whole (head and body read by connection.py). /healthz, /metrics and the 404/405
answers are written at once; a prediction is driven by callbacks, and its connection abandons it
when the client goes away while it still waits for a free replica. The metrics API runs as a task.
One coarse tick checks the deadlines of every unfinished prediction (busy timeout, request timeout).
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from .call import ModelCall
from .codec import encode
from .errors import INTERNAL, INTERNAL_BODY, error_body
from .live_routes import LiveRoutes
from .metrics import CONTENT_TYPE, UNKNOWN_MODEL, ProxyMetrics
from .metrics_api import PATHS as METRICS_API_PATHS
from .metrics_api import answer as metrics_api_answer
from .monitoring import PAGE as MONITORING_PAGE
from .recorder import Recorder
from .technical import TechnicalMetrics
from .upstream import Upstream

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
TICK_SECONDS = 0.05  # how late a 429 or 504 may be: the deadlines of all calls are checked this often


class Handler:
    def __init__(
        self, routes: LiveRoutes, upstream: Upstream, metrics: ProxyMetrics, recorder: Recorder | None = None
    ) -> None:
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics
        self.recorder = recorder or Recorder(None)
        self.technical = TechnicalMetrics(self.recorder)
        self.active: set[ModelCall] = set()  # predictions not yet answered
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None

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
            ModelCall(self, conn, request, self.routes.table).start(query)
        elif path in METRICS_API_PATHS:
            self._start(request, self._metrics_api(conn, request, path))
        elif path == b"/monitoring":
            conn.respond(request, 200, MONITORING_PAGE, content_type=_HTML, extra=_PAGE_HEADERS)
        elif path == b"/healthz":
            conn.respond(request, 200, encode({"status": "ok", "generation": self.routes.table.generation}))
        else:
            conn.respond(request, 200, self.metrics.render(), content_type=CONTENT_TYPE)

    def track(self, call: ModelCall) -> None:
        """call waits for a replica or runs on one: its deadline is checked by the tick."""
        self.active.add(call)
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(TICK_SECONDS, self._check_deadlines)

    def untrack(self, call: ModelCall) -> None:
        active = self.active
        active.discard(call)
        if not active and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _check_deadlines(self) -> None:
        now = monotonic()
        try:
            for call in [call for call in self.active if call.deadline <= now]:
                call.expire()
        finally:
            self._tick = (
                asyncio.get_running_loop().call_later(TICK_SECONDS, self._check_deadlines)
                if self.active
                else None
            )

    def _start(self, request: Request, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
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

    async def shut_down(self) -> None:
        """Wait for predictions still running (their connections were asked to close after them)."""
        if self.active:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upstream.close()
