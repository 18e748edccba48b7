"""One client connection: HTTP/1.1 framing with httptools, read deadlines, and lingering close.

A connection is in one phase at a time:
- ``IDLE``: between requests (keep-alive), closed after ``keepalive_timeout``;
- ``HEAD``: reading a request line and headers, due within ``header_timeout`` of its first byte
  (of the connection's opening for a first request) and bounded to ``MAX_HEAD_BYTES`` (431);
- ``BODY``: reading the body, due within ``body_timeout`` of the end of the headers, bounded by
  the routing table's ``max_request_bytes`` (413 as soon as the count passes it);
- ``BUSY``: the request is being answered; pipelined requests behind it wait, in order;
- ``LINGER``: an error was answered with ``connection: close`` and the write side shut; what the
  client still sends is read and thrown away (at most ``LINGER_BYTES`` for ``LINGER_SECONDS``)
  so that a client sending its whole body before reading, as urllib, http.client and requests
  do, gets the answer rather than a connection reset.
Deadlines are checked by the hub's one sweeping timer, not by a timer per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

import httptools

from .errors import INTERNAL_BODY, ProxyError, error_body
from .responses import CONTINUE, COPY_LIMIT, JSON, head, response
from .wire import too_large

if TYPE_CHECKING:
    from .call import ModelCall
    from .hub import Hub

log = logging.getLogger("cmlplan.proxy")

MAX_HEAD_BYTES = 32 * 1024
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 30.0

IDLE, HEAD, BODY, BUSY, LINGER = range(5)

_HEAD_TOO_LARGE = ProxyError(
    431,
    "request.headers_too_large",
    f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
    close=True,
)
_TIMEOUT = error_body("request.timeout", "the request was not received in time")


class Request:
    """What the proxy keeps of one request: its URL, three headers and the body."""

    __slots__ = (
        "url",
        "method",
        "authorization",
        "authorizations",
        "content_length",
        "expect_continue",
        "keep_alive",
        "http10",
        "chunks",
        "size",
        "error",
        "at_replica",
        "replica",
        "call",
    )

    def __init__(self) -> None:
        self.url = b""
        self.method = b""
        self.authorization: bytes | None = None
        self.authorizations = 0
        self.content_length: bytes | None = None
        self.expect_continue = False
        self.keep_alive = True
        self.http10 = False
        self.chunks: list[bytes] = []
        self.size = 0
        self.error: ProxyError | None = None  # answer this instead of handling the request
        self.at_replica = False  # a replica started on it: it runs to the end whatever the client does
        self.replica = ""  # the id of the replica that answered it, for the technical metrics
        self.call: ModelCall | None = None  # a prediction that may still be abandoned

    def body(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


class _StopParsing(Exception):
    """Raised from a parser callback: nothing after this point of the stream is parsed."""


class Connection(asyncio.Protocol):
    """An HTTP/1.1 server connection; requests go to ``hub.handler`` one at a time, in order."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.phase = IDLE
        self.deadline = 0.0
        self.request: Request | None = None  # being read
        self.current: Request | None = None  # being answered
        self.pipeline: deque[Request] = deque()
        self.limit = 0
        self.in_head = False
        self.head_bytes = 0  # bytes of earlier reads that ended inside the current head
        self.head_size = 0  # exact size of the current head so far
        self.chunk = 0
        self.body_in_chunk = 0
        self.heads_in_chunk = 0  # bytes of the heads completed in this read (pipelined requests)
        self.discarding = False  # the parser stopped: what arrives is thrown away
        self.discarded = 0
        self.first = True
        self.read_eof = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.deadline = (
            monotonic() + self.hub.routes.table.header_timeout
        )  # a first request is due from the start
        self.hub.add(self)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            self.discarded += len(data)
            if self.discarded > LINGER_BYTES:
                self.abort()
            return
        self.chunk = len(data)
        self.body_in_chunk = 0
        self.heads_in_chunk = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _StopParsing):
                log.error("unexpected error while reading a request", exc_info=exc.__context__)
                self.hub.handler.metrics.internal_error()
                self.refuse(500, INTERNAL_BODY)  # counted there
            return
        except httptools.HttpParserUpgrade:
            self.refuse(400, error_body("request.invalid", "protocol upgrades are not supported"))
            return
        except httptools.HttpParserError:
            self.refuse(400, error_body("request.invalid", "the request is not valid HTTP/1.1"))
            return
        if self.in_head:  # a head is unfinished: count what it has buffered
            self.head_bytes += self.chunk - self.body_in_chunk - self.heads_in_chunk
            if self.head_bytes > MAX_HEAD_BYTES:
                self.refuse(_HEAD_TOO_LARGE.status, _HEAD_TOO_LARGE.body())

    def eof_received(self) -> bool | None:
        self.read_eof = True
        current = self.current
        if self.phase == BUSY and current is None and self.pipeline:
            return True  # between two pipelined requests: answer them, then close
        if self.phase == BUSY and current is not None:
            if current.at_replica or current.call is None:
                return True  # keep the write side open: a half-closed client still reads the answer
            current.call.abandon()  # still waiting for a replica: its client is gone, free its place
            return None
        if self.phase == LINGER:
            return True  # the client sent everything it will: close once the answer is written
        if self.phase == BODY:
            self.hub.handler.count_refusal(499)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.remove(self)
        current = self.current
        if current is not None and current.call is not None and not current.at_replica:
            current.call.abandon()
        elif self.phase == BODY and not self.read_eof:
            self.hub.handler.count_refusal(499)
        self.pipeline.clear()
        self.phase = LINGER

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self.request = Request()
        self.in_head = True
        self.head_size = 0
        if self.phase == IDLE:
            self.phase = HEAD
            if not self.first:
                self.deadline = monotonic() + self.hub.routes.table.header_timeout

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        self.request.url += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        length = len(name)
        if length == 13 and name.lower() == b"authorization":
            request = self.request
            request.authorizations += 1  # type: ignore[union-attr]
            request.authorization = value  # type: ignore[union-attr]
        elif length == 14 and name.lower() == b"content-length":
            self.request.content_length = value  # type: ignore[union-attr]
        elif length == 6 and name.lower() == b"expect":
            self.request.expect_continue = value.lower() == b"100-continue"  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        parser = self.parser
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        request.http10 = parser.get_http_version() == "1.0"
        self.in_head = False
        upper_bound = self.head_bytes + self.chunk
        # this head's size: request line ("M URL HTTP/1.1\r\n"), headers counted as "name: value\r\n", "\r\n"
        size = self.head_size + len(request.method) + 14
        self.heads_in_chunk += max(0, size - self.head_bytes)  # the part of it read in this chunk
        self.head_bytes = 0
        if upper_bound > MAX_HEAD_BYTES and self.head_size > MAX_HEAD_BYTES:
            self.refuse_request(request, _HEAD_TOO_LARGE)
        table = self.hub.routes.table
        self.limit = table.max_request_bytes
        if request.content_length is not None:
            try:
                declared = int(request.content_length)
            except ValueError:
                declared = -1
                self.refuse_request(
                    request, ProxyError(400, "request.invalid", "Content-Length is not a number")
                )
            if declared > self.limit:
                self.refuse_request(request, too_large(self.limit))
        if self.phase == HEAD:
            self.phase = BODY
            self.deadline = monotonic() + table.body_timeout
            if request.expect_continue and self.transport is not None:
                self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_in_chunk += len(body)
        request = self.request
        assert request is not None
        request.size += len(body)
        if request.size > self.limit:
            request.chunks = []
            self.refuse_request(request, too_large(self.limit))
        request.chunks.append(body)

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        assert request is not None
        if self.phase == BUSY:  # pipelined behind the request being answered
            self.pipeline.append(request)
            if self.transport is not None and len(self.pipeline) == 1:
                self.transport.pause_reading()
            return
        self.phase = BUSY
        self.current = request
        self.dispatch(request)

    # ------------------------------------------------------------ answering

    def respond(
        self,
        request: Request,
        status: int,
        body: bytes,
        *,
        close: bool = False,
        content_type: bytes = JSON,
        extra: bytes = b"",
    ) -> None:
        """Write the answer to ``request`` (the current one) and move on to the next."""
        transport = self.transport
        if self.current is not request or transport is None or transport.is_closing():
            return
        close = close or not request.keep_alive or self.hub.closing
        if request.http10 and not close:
            extra += b"connection: keep-alive\r\n"
        if len(body) <= COPY_LIMIT:
            transport.write(response(status, body, content_type=content_type, close=close, extra=extra))
        else:  # a metrics read of 10 MB is handed over as it is, not copied behind its head
            transport.writelines((head(status, len(body), content_type=content_type, close=close, extra=extra), body))
        self.current = None
        if request.error is not None:
            self.linger()
        elif close or (self.read_eof and not self.pipeline):
            self.phase = LINGER
            transport.close()
        else:
            self.first = False
            self.hub.touch(self)
            if self.pipeline:  # still BUSY: the next request on the next turn, so that a long
                asyncio.get_running_loop().call_soon(self._next_in_line)  # pipeline is no recursion
            else:
                self.phase = IDLE
                self.deadline = monotonic() + self.hub.routes.table.keepalive_timeout

    def _next_in_line(self) -> None:
        transport = self.transport
        if self.current is None and self.pipeline and transport is not None and not transport.is_closing():
            self.next_request()

    def next_request(self) -> None:
        request = self.pipeline.popleft()
        if self.transport is not None and not self.pipeline and not self.discarding:
            self.transport.resume_reading()
        self.phase = BUSY
        self.current = request
        if request.error is not None:
            self.answer_refusal(request)
        else:
            self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        try:
            self.hub.handler.handle(self, request)
        except Exception:  # a bug: answer 500 with the CML body, never a stack trace on the wire
            log.exception("unexpected error while handling a request")
            self.hub.handler.metrics.internal_error()
            self.hub.handler.count_refusal(500)
            self.respond(request, 500, INTERNAL_BODY, close=True)

    def refuse_request(self, request: Request, error: ProxyError) -> None:
        """From a parser callback: refuse the request being read (413, 431, bad length) and stop parsing.

        It is answered at once, or after the requests pipelined before it.
        """
        request.error = error
        self.request = None
        self.discarding = True
        if self.phase == BUSY:
            self.pipeline.append(request)
        else:
            self.phase = BUSY
            self.current = request
            self.answer_refusal(request)
        raise _StopParsing

    def answer_refusal(self, request: Request) -> None:
        error = request.error
        assert error is not None
        self.hub.handler.count_refusal(error.status)
        self.respond(request, error.status, error.body(), close=True)

    def refuse(self, status: int, body: bytes) -> None:
        """Answer an error the parser cannot go past (bad HTTP, head too large), then close lingering."""
        self.discarding = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.hub.handler.count_refusal(status)
        if self.current is None:  # never interleave with an answer still being made
            transport.write(response(status, body, close=True))
            self.linger()
        else:
            transport.close()

    def linger(self) -> None:
        """Shut the write side after the answer and discard what the client still sends."""
        transport = self.transport
        self.phase = LINGER
        self.discarding = True
        self.request = None
        self.pipeline.clear()
        if transport is None or transport.is_closing():
            return
        if self.read_eof or not transport.can_write_eof():
            transport.close()
            return
        self.deadline = monotonic() + LINGER_SECONDS
        transport.resume_reading()
        transport.write_eof()

    # ------------------------------------------------------------ the hub's calls

    def evictable(self) -> bool:
        """Nothing of the proxy's is running for it: closing it loses no answer."""
        return self.phase != BUSY

    def timed_out(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.phase in (HEAD, BODY) and self.current is None:
            self.hub.handler.count_refusal(408)
            transport.write(response(408, _TIMEOUT, close=True))
        self.phase = LINGER
        transport.close()  # a client too slow for the deadline gets no lingering either

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_when_idle(self) -> bool:
        """Shutdown: close now unless a request is being answered (that one closes after it)."""
        if self.phase == BUSY:
            return False
        if self.transport is not None:
            self.transport.close()
        return True
