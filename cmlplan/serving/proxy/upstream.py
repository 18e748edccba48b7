"""Calls to replicas, each over one persistent HTTP/1.1 connection; every upstream failure is mapped here.

A replica runs one prediction at a time and the pool hands a replica to one request at a time, so
one connection per replica is all a proxy process needs: no connection pool, no client library.
The request is written in one piece and the reply parsed with httptools.

Outcomes of one call:
- the replica's own answer (200 success, 500 model.exception, 400) -> passed through as bytes,
  with the metrics the model tracked (the ``x-cmlplan-metrics`` header) for the store;
- ``Retry``: the replica could not take the request (no connection within CONNECT_TIMEOUT, or
  429 replica.busy because another proxy process holds it) -> try another replica;
- ``ProxyError`` 504 model.timeout (no answer within request_timeout) or 502 replica.failed
  (connection reset, replica died mid-request, or an answer that is not the replica contract).
A connection that did not end with a complete answer is dropped, so a late reply can never be
read as the answer to the next request.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from urllib.parse import urlsplit

import httptools

from .errors import ProxyError
from .pool import Replica

log = logging.getLogger("cmlplan.proxy")

DOWN_COOLDOWN = 1.0  # a replica that refused a connection is not tried again for this long
BUSY_COOLDOWN = 0.02  # poll interval for a replica busy with another proxy process
CONNECT_TIMEOUT = 1.0  # a healthy replica on this host or network accepts far sooner
KEEP_ALIVE_SECONDS = 60.0  # shorter than the replica's own keep-alive, so we close first
_PASS_THROUGH = frozenset({200, 400, 500})
METRICS_HEADER = b"x-cmlplan-metrics"  # what the model tracked: {"uuid", "replica", "metrics"}

Answer = tuple[int, bytes, bytes | None]  # status, body, tracked metrics (JSON) or None


class Retry(Exception):
    """The replica did not start this prediction: cool it down for ``cooldown`` s, try another."""

    def __init__(self, cooldown: float, *, down: bool) -> None:
        super().__init__()
        self.cooldown = cooldown
        self.down = down


class ReplicaGone(Exception):
    """The connection ended, or the replica sent bytes that are not HTTP, before a whole answer."""


class ReplicaConnection(asyncio.Protocol):
    """One keep-alive connection to a replica; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._metrics: bytes | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("the replica answered something that is not HTTP")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 17 and name.lower() == METRICS_HEADER:
            self._metrics = value

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        metrics, self._metrics = self._metrics, None
        waiter, self._waiter = self._waiter, None
        keep = self._parser.should_keep_alive()
        if waiter is None:  # an answer nobody asked for: the connection is out of step
            self.close()
            return
        if not keep:
            self.close()
        self.last_used = monotonic()
        if not waiter.done():
            waiter.set_result((self._parser.get_status_code(), body, metrics))

    def eof_received(self) -> bool:
        self._fail("the replica closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("the replica closed the connection")

    def _fail(self, why: str) -> None:
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ReplicaGone(why))

    def close(self) -> None:
        """Drop the connection at once (unsent bytes included): nothing on it is worth finishing."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Upstream:
    """Opens, reuses and drops the replicas' connections."""

    async def predict(self, replica: Replica, body: bytes, address: str, timeout: float) -> Answer:
        """POST body to the replica's /predict: (status, body, tracked metrics) to pass through, or raise."""
        started = monotonic()
        conn = replica.conn
        if conn is None or conn.closed or started - conn.last_used > KEEP_ALIVE_SECONDS:
            if conn is not None:
                conn.close()
            replica.conn = None
            conn = await self._connect(replica, address, min(CONNECT_TIMEOUT, timeout))
            replica.conn = conn
        head = replica.request_head
        if head is None:
            head = replica.request_head = _request_head(replica.url)
        loop = asyncio.get_running_loop()
        waiter = conn.send(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        timer = loop.call_later(max(0.0, timeout - (monotonic() - started)), _expire, waiter)
        try:
            status, payload, metrics = await waiter
        except TimeoutError:
            conn.close()
            log.warning("%s: replica %s did not answer within %.1fs", address, replica.id, timeout)
            raise ProxyError(
                504, "model.timeout", f"the model did not answer within {timeout:g} seconds"
            ) from None
        except ReplicaGone as exc:
            log.warning("%s: replica %s failed mid-request: %s", address, replica.id, exc)
            raise ProxyError(
                502, "replica.failed", "the model replica failed while handling the request"
            ) from None
        except BaseException:  # cancelled: the answer, if it comes, must not meet the next request
            conn.close()
            raise
        finally:
            timer.cancel()
        if status in _PASS_THROUGH:
            return status, payload, metrics
        if status == 429:
            raise Retry(BUSY_COOLDOWN, down=False)
        log.warning("%s: replica %s answered unexpected status %d", address, replica.id, status)
        raise ProxyError(502, "replica.failed", f"the model replica answered HTTP {status}")

    async def _connect(self, replica: Replica, address: str, timeout: float) -> ReplicaConnection:
        parts = urlsplit(replica.url)
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(ReplicaConnection, parts.hostname, parts.port or 80), timeout
            )
        except TimeoutError:
            # nothing was sent: a replica that cannot even be connected to is down, try another
            log.warning(
                "%s: replica %s did not accept a connection within %.1fs", address, replica.id, timeout
            )
            raise Retry(DOWN_COOLDOWN, down=True) from None
        except OSError as exc:  # refused, unreachable, or a name that does not resolve (yet)
            log.warning("%s: replica %s refused the connection: %s", address, replica.id, exc)
            raise Retry(DOWN_COOLDOWN, down=True) from None
        return conn


def _request_head(url: str) -> bytes:
    """Everything of a /predict request before the body length's digits."""
    host = urlsplit(url).netloc.encode("latin-1")
    return b"POST /predict HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: " % host


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
