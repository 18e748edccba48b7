"""One ``POST /model`` call, top to bottom, as a small state machine driven by callbacks.

parse and check the call -> take a free replica or wait in the model's line -> send the request
on the replica's connection -> the answer (or a retry elsewhere, or a failure) -> the metrics the
model tracked made durable -> the answer written to the client.

Every step runs from the event loop's own callbacks (the client's and the replica's sockets, the
pool handing over a replica, the store's writer settling a batch), so a prediction costs no task,
no future and no timer: the busy and request deadlines are checked by one coarse tick for all
calls (``Handler.tick``), which answers 429/503 or 504 at most TICK_SECONDS late.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING

from .auth import authorize
from .errors import INTERNAL, INTERNAL_BODY, ProxyError
from .metrics import UNKNOWN_MODEL
from .wire import parse_call

if TYPE_CHECKING:
    from .connection import Connection, Request
    from .handler import Handler
    from .pool import Pool, Replica
    from .routes import ModelRoute, RoutingTable

log = logging.getLogger("cmlplan.proxy")

CLIENT_GONE = 499  # nginx's code for a client that closed before its answer; metrics only

# states
NEW, WAITING, AT_REPLICA, STORING, DONE = range(5)


class ModelCall:
    """A prediction request from parsing to the answer; ``Handler.active`` holds the unfinished ones."""

    __slots__ = (
        "handler",
        "conn",
        "request",
        "table",
        "started",
        "address",
        "model",
        "payload",
        "state",
        "deadline",
        "busy_deadline",
        "replica",
    )

    def __init__(self, handler: Handler, conn: Connection, request: Request, table: RoutingTable) -> None:
        self.handler = handler
        self.conn = conn
        self.request = request
        self.table = table  # one snapshot for the whole call
        self.started = monotonic()
        self.address = UNKNOWN_MODEL
        self.model: ModelRoute | None = None
        self.payload = b""
        self.state = NEW
        self.deadline = 0.0  # of the current state: busy (WAITING) or request timeout (AT_REPLICA)
        self.busy_deadline = 0.0
        self.replica: Replica | None = None

    # ------------------------------------------------------------ steps

    def start(self, query: bytes) -> None:
        request = self.request
        table = self.table
        try:
            if request.authorizations > 1:
                raise ProxyError(400, "request.invalid", "send one Authorization header, not several")
            access_key, self.payload = parse_call(request.body(), query)
            request.chunks = []
            model = table.find_model(access_key)
            if model is None:
                raise ProxyError(404, "model.not_found", "no model is deployed with this access key")
            self.model = model
            self.address = model.address
            if model.authentication:
                authorize(table, model, request.authorization)
            if model.stopped:
                raise ProxyError(503, "model.stopped", f"the model {model.name!r} is stopped")
        except ProxyError as error:
            self._finish(error.status, error.body(), close=error.close)
            return
        except Exception:
            self._crash("while reading a prediction call")
            return
        request.call = self
        self.handler.track(self)
        self.busy_deadline = self.started + table.busy_timeout
        self._seek(first=False)

    def _seek(self, *, first: bool) -> None:
        pool: Pool = self.model.pool  # type: ignore[union-attr]
        self.state = WAITING
        self.deadline = self.busy_deadline
        self.request.at_replica = False
        replica = pool.acquire(self, first=first)
        if replica is not None:
            self.assign(replica)

    def assign(self, replica: Replica | None) -> None:
        """From the pool: a replica marked busy for this call, or None (the model has none left)."""
        if self.state != WAITING:  # cannot happen: a call leaves the line before it finishes
            if replica is not None:
                self.model.pool.release(replica)  # type: ignore[union-attr]
            return
        if replica is None:
            self._finish_error(self._no_replica())
            return
        try:
            self.replica = replica
            self.state = AT_REPLICA
            request = self.request
            request.at_replica = True  # from here on it runs to the end whatever the client does
            request.replica = replica.id
            now = monotonic()
            timeout = self.table.request_timeout
            self.deadline = now + timeout
            self.handler.upstream.send(replica, self, self.payload, now, timeout)
        except Exception:
            self._crash("while sending a prediction to a replica")

    def answered(self, status: int, body: bytes, metrics: bytes | None) -> None:
        """From the replica's connection: its answer, passed through as it is."""
        if self.state != AT_REPLICA:
            return
        try:
            self._release()
            if metrics is None:
                self._finish(status, body)
                return
            self.state = STORING  # durable before the answer leaves; a refusal rides in a header
            self.handler.recorder.track(
                self.model,  # type: ignore[arg-type]
                metrics,
                lambda extra: self._stored(status, body, extra),
                self.model.pool.queued_per_replica(),  # type: ignore[union-attr]
            )
        except Exception:
            self._crash("while answering a prediction")

    def _stored(self, status: int, body: bytes, extra: bytes) -> None:
        if self.state == STORING:
            self._finish(status, body, extra=extra)

    def retry(self, cooldown: float, *, down: bool) -> None:
        """The replica did not start the prediction: cool it down, look for another until busy_timeout."""
        if self.state != AT_REPLICA:
            return
        try:
            self._release(cooldown, down=down)
            if monotonic() >= self.busy_deadline:
                self._finish_error(self._no_replica())
            else:
                self._seek(first=True)
        except Exception:
            self._crash("while retrying a prediction")

    def failed(self, error: ProxyError) -> None:
        if self.state != AT_REPLICA:
            return
        try:
            self._release()
            self._finish_error(error)
        except Exception:
            self._crash("while answering a replica's failure")

    def finished(self) -> bool:
        return self.state == DONE

    def expire(self) -> None:
        """From the tick: the deadline of the current state passed."""
        try:
            self._expire()
        except Exception:
            self._crash("at a deadline")

    def _expire(self) -> None:
        state = self.state
        if state == WAITING:
            self.model.pool.leave(self)  # type: ignore[union-attr]
            self._finish_error(self._no_replica())
        elif state == AT_REPLICA:
            replica = self.replica
            assert replica is not None
            self.handler.upstream.abandon(replica, self)
            self._release()
            timeout = self.table.request_timeout
            log.warning("%s: replica %s did not answer within %.1fs", self.address, replica.id, timeout)
            self._finish_error(
                ProxyError(504, "model.timeout", f"the model did not answer within {timeout:g} seconds")
            )

    def abandon(self) -> None:
        """The client left: a call still waiting for a replica leaves the line and is never run."""
        if self.state == WAITING:
            self.model.pool.leave(self)  # type: ignore[union-attr]
            self.state = DONE
            self.handler.untrack(self)
            self.handler.metrics.record(self.address, CLIENT_GONE, self.started)

    # ------------------------------------------------------------ endings

    def _release(self, cooldown: float = 0.0, *, down: bool = False) -> None:
        replica, self.replica = self.replica, None
        if replica is not None:
            self.model.pool.release(replica, cooldown, down=down)  # type: ignore[union-attr]

    def _no_replica(self) -> ProxyError:
        pool = self.model.pool  # type: ignore[union-attr]
        if not pool.replicas:
            return ProxyError(503, "model.unavailable", "the model has no running replicas")
        if pool.all_down():
            return ProxyError(503, "model.unavailable", "no replica of the model is reachable")
        busy = self.table.busy_timeout
        return ProxyError(429, "model.busy", f"all replicas stayed busy for {busy:g} seconds")

    def _finish_error(self, error: ProxyError) -> None:
        self._finish(error.status, error.body(), close=error.close)

    def _finish(self, status: int, body: bytes, *, close: bool = False, extra: bytes = b"") -> None:
        self.state = DONE
        handler = self.handler
        handler.untrack(self)
        request = self.request
        self.conn.respond(request, status, body, close=close, extra=extra)
        seconds = monotonic() - self.started
        handler.metrics.observe(self.address, status, seconds)
        model = self.model
        if model is not None:
            handler.technical.record(model, request.replica, status, seconds, request.size, len(body))

    def _crash(self, where: str) -> None:
        """A bug: answer 500 with the CML body, never a stack trace on the wire, and free the replica."""
        log.exception("%s: unexpected error %s", self.address, where)
        self.handler.metrics.internal_error()
        replica, self.replica = self.replica, None
        if replica is not None:
            self.handler.upstream.abandon(replica, self)
            if self.model is not None:
                self.model.pool.release(replica)
        if self.state == WAITING and self.model is not None:
            self.model.pool.leave(self)
        if self.state != DONE:
            self._finish(INTERNAL, INTERNAL_BODY, close=True)
