"""The replica's HTTP/1.1 server: httptools framing on an asyncio Protocol, one answer at a time.

Why not uvicorn: a replica has one client that matters (the proxy, on a persistent connection) and
three routes. uvicorn's ASGI cycle (a task, two send messages, header lists and the proxy-headers
middleware per request) was half of the replica's own CPU per prediction; this is the part of it a
replica needs. What it keeps from uvicorn: keep-alive with an idle timeout, pipelined requests
answered in order, 100-continue, 400 and close on anything that is not HTTP/1.x, and a graceful
stop on SIGTERM that lets the prediction in flight finish and answers it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from .app import ReplicaApp

log = logging.getLogger("cmlplan.replica")

SWEEP_SECONDS = 5.0
MAX_WAITING = 64  # pipelined requests held per connection before reading pauses
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            429: b"Too Many Requests", 500: b"Internal Server Error", 503: b"Service Unavailable"}  # fmt: skip
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = b'{"success": false, "errors": {"request.invalid": "not a valid HTTP/1.1 request"}}'


def response(status: int, body: bytes, metrics: bytes | None, keep_alive: bool) -> bytes:
    """A whole JSON response: head and body in one buffer (replica bodies are small)."""
    parts = [
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        % (status, _REASONS.get(status, b"Unknown"), len(body))
    ]
    if metrics is not None:
        parts.append(b"x-cmlplan-metrics: " + metrics + b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


class Request:
    __slots__ = ("method", "path", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.keep_alive = keep_alive


class Connection(asyncio.Protocol):
    """One client connection; requests complete in order, the next waits for the answer before it."""

    def __init__(self, server: ReplicaServer) -> None:
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = bytearray()
        self.chunks: list[bytes] = []
        self.expect_continue = False
        self.waiting: deque[Request] = deque()
        self.answering = False
        self.dispatching = False
        self.paused = False
        self.last_active = monotonic()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = monotonic()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            self._refuse()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.url.clear()
        self.chunks = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.expect_continue and self.transport is not None and not self.answering:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        path = bytes(self.url).split(b"?", 1)[0]
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        keep_alive = self.parser.should_keep_alive() and not self.server.stopping
        self.waiting.append(Request(self.parser.get_method(), path, body, keep_alive))
        if len(self.waiting) >= MAX_WAITING and not self.paused and self.transport is not None:
            self.paused = True  # a client pipelining without reading: stop reading until it catches up
            self.transport.pause_reading()
        if not self.answering:
            self._next()

    # answering

    def _next(self) -> None:
        """Answer waiting requests in order; one answered at once (/healthz) loops here, not recurses."""
        if self.dispatching:
            return
        self.dispatching = True
        try:
            while self.waiting and not self.answering and self.transport is not None:
                request = self.waiting.popleft()
                self.answering = True
                self.app.handle(request.method, request.path, request.body, _Reply(self, request.keep_alive))
        finally:
            self.dispatching = False
        if self.paused and len(self.waiting) < MAX_WAITING // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def answered(self, status: int, body: bytes, metrics: bytes | None, keep_alive: bool) -> None:
        self.answering = False
        self.last_active = monotonic()
        transport = self.transport
        if transport is None:  # the client left while the model ran: nobody to tell
            return
        keep_alive = keep_alive and not self.server.stopping
        transport.write(response(status, body, metrics, keep_alive))
        if not keep_alive:
            transport.close()
            return
        self._next()

    def idle_since(self) -> float | None:
        """When this connection last did something, or None if it is answering a request."""
        return None if self.answering or self.waiting else self.last_active

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _refuse(self) -> None:
        if self.transport is not None:
            self.transport.write(response(400, _BAD_REQUEST, None, keep_alive=False))
            self.transport.close()


class _Reply:
    """The callable the app answers through: bound to one connection and its keep-alive."""

    __slots__ = ("connection", "keep_alive")

    def __init__(self, connection: Connection, keep_alive: bool) -> None:
        self.connection = connection
        self.keep_alive = keep_alive

    def __call__(self, status: int, body: bytes, metrics: bytes | None = None) -> None:
        self.connection.answered(status, body, metrics, self.keep_alive)


class ReplicaServer:
    """Listens, sweeps idle connections, and stops gracefully on SIGTERM or SIGINT."""

    def __init__(self, app: ReplicaApp, *, keep_alive_seconds: float, graceful_seconds: float) -> None:
        self.app = app
        self.keep_alive_seconds = keep_alive_seconds
        self.graceful_seconds = graceful_seconds
        self.connections: set[Connection] = set()
        self.stopping = False
        self._stop = asyncio.Event()
        self._sweep_every = SWEEP_SECONDS
        self._sweeper: asyncio.TimerHandle | None = None
        self.port = 0

    def stop(self) -> None:
        """What SIGTERM does: stop listening, answer what is in flight, then return from serve."""
        self._stop.set()

    async def serve(self, host: str, port: int, *, signals: bool = True) -> None:
        """Serve until a stop signal, then finish what is in flight. Raises OSError if it cannot bind.

        ``port`` 0 picks a free port, kept in ``self.port``; ``signals`` False leaves SIGTERM and
        SIGINT alone (a server run inside another program, as the tests do).
        """
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(self), host, port, backlog=2048)
        self.port = server.sockets[0].getsockname()[1]
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        log.info("replica %s serving on http://%s:%d", self.app.replica_id, host, self.port)
        self._sweep_every = min(SWEEP_SECONDS, self.keep_alive_seconds / 2)
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        await self._stop.wait()
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        server.close()
        for connection in list(self.connections):
            if connection.idle_since() is not None:
                connection.close()
        deadline = monotonic() + self.graceful_seconds
        while any(c.idle_since() is None for c in self.connections) and monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        await asyncio.sleep(0)  # let the transports flush and close

    def _sweep(self) -> None:
        limit = monotonic() - self.keep_alive_seconds
        for connection in list(self.connections):
            idle = connection.idle_since()
            if idle is not None and idle < limit:
                connection.close()
        if not self.stopping:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)
