"""Calls to replicas, each over one persistent HTTP/1.1 connection; every upstream failure is mapped here.

A replica runs one prediction at a time and the pool hands a replica to one request at a time, so
one connection per replica is all a proxy process needs: no connection pool, no client library.
The request is written in one piece, the reply parsed with httptools, and the outcome handed to
the waiting call (call.py) from the parser's callback: no future and no task per request.

Outcomes of one call:
- the replica's own answer (200 success, 500 model.exception, 400) -> ``call.answered``, passed
  through as bytes, with the metrics the model tracked (the ``x-cmlplan-metrics`` header);
- ``call.retry``: the replica could not take the request (no connection within CONNECT_TIMEOUT,
  or 429 replica.busy because another proxy process holds it) -> try another replica;
- ``call.failed`` with 502 replica.failed (connection reset, replica died mid-request, or an answer
  that is not the replica contract). 504 is the call's own deadline; it drops the connection
  through ``abandon``.
A connection that did not end with a complete answer is dropped, so a late reply can never be
read as the answer to the next request.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Protocol
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
_FAILED = "the model replica failed while handling the request"


class Exchange(Protocol):
    """The request a replica is working on; exactly one of its three methods is called, once."""

    address: str
    replica: Replica | None

    def answered(self, status: int, body: bytes, metrics: bytes | None) -> None: ...

    def retry(self, cooldown: float, *, down: bool) -> None: ...

    def failed(self, error: ProxyError) -> None: ...

    def finished(self) -> bool: ...


class ReplicaConnection(asyncio.Protocol):
    """One keep-alive connection to a replica; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = monotonic()
        self.call: Exchange | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._metrics: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, call: Exchange, data: bytes) -> None:
        assert self.transport is not None and self.call is None
        self.call = call
        self.transport.write(data)

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
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        metrics, self._metrics = self._metrics, None
        call, self.call = self.call, None
        if call is None:  # an answer nobody asked for: the connection is out of step
            self.close()
            return
        if not self._parser.should_keep_alive():
            self.close()
        self.last_used = monotonic()
        _deliver(call, self._parser.get_status_code(), body, metrics)

    def eof_received(self) -> bool:
        self._fail("the replica closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("the replica closed the connection")

    def _fail(self, why: str) -> None:
        self.close()
        call, self.call = self.call, None
        if call is not None:
            replica = call.replica.id if call.replica is not None else "?"
            log.warning("%s: replica %s failed mid-request: %s", call.address, replica, why)
            call.failed(ProxyError(502, "replica.failed", _FAILED))

    def close(self) -> None:
        """Drop the connection at once (unsent bytes included): nothing on it is worth finishing."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _deliver(call: Exchange, status: int, body: bytes, metrics: bytes | None) -> None:
    if status in _PASS_THROUGH:
        call.answered(status, body, metrics)
    elif status == 429:
        call.retry(BUSY_COOLDOWN, down=False)
    else:
        replica = call.replica.id if call.replica is not None else "?"
        log.warning("%s: replica %s answered unexpected status %d", call.address, replica, status)
        call.failed(ProxyError(502, "replica.failed", f"the model replica answered HTTP {status}"))


class Upstream:
    """Opens, reuses and drops the replicas' connections."""

    def __init__(self) -> None:
        self._connecting: set[asyncio.Task[None]] = set()

    def send(self, replica: Replica, call: Exchange, body: bytes, now: float, timeout: float) -> None:
        """POST body to the replica's /predict; the outcome comes back through call's methods."""
        head = replica.request_head
        if head is None:
            head = replica.request_head = _request_head(replica.url)
        data = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        conn = replica.conn
        if conn is not None and not conn.closed and now - conn.last_used <= KEEP_ALIVE_SECONDS:
            conn.send(call, data)
            return
        if conn is not None:
            conn.close()
        replica.conn = None
        task = asyncio.get_running_loop().create_task(
            self._connect_and_send(replica, call, data, min(CONNECT_TIMEOUT, timeout))
        )
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def abandon(self, replica: Replica, call: Exchange) -> None:
        """call gave up on replica (timeout): drop the connection so a late answer meets nobody."""
        conn = replica.conn
        if conn is not None and conn.call is call:
            conn.call = None
            conn.close()

    async def _connect_and_send(self, replica: Replica, call: Exchange, data: bytes, timeout: float) -> None:
        try:
            conn = await self._connect(replica, call.address, timeout)
        except _Refused as refused:
            if not call.finished():
                call.retry(refused.cooldown, down=True)
            return
        if call.finished() or call.replica is not replica:  # timed out while connecting
            conn.close()
            return
        replica.conn = conn
        conn.send(call, data)

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
            raise _Refused(DOWN_COOLDOWN) from None
        except OSError as exc:  # refused, unreachable, or a name that does not resolve (yet)
            log.warning("%s: replica %s refused the connection: %s", address, replica.id, exc)
            raise _Refused(DOWN_COOLDOWN) from None
        return conn

    async def close(self) -> None:
        """Let connections being opened finish or fail (shutdown)."""
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)


class _Refused(Exception):
    def __init__(self, cooldown: float) -> None:
        super().__init__()
        self.cooldown = cooldown


def _request_head(url: str) -> bytes:
    """Everything of a /predict request before the body length's digits."""
    host = urlsplit(url).netloc.encode("latin-1")
    return b"POST /predict HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: " % host
