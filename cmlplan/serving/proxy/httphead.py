"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools has no header size limit of its own: it buffers a header line of any size. A request
whose head exceeds ``MAX_HEAD_BYTES`` is answered 431 and its connection closed, whether the head
arrives in one read or trickles in: while a head is unfinished the bytes of each read are counted
(minus body bytes of a pipelined previous request), so memory stays within the limit plus one
read. The normal path pays a few attribute updates per read, nothing per header.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import error_body

MAX_HEAD_BYTES = 32 * 1024

_BODY = error_body("request.headers_too_large", f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # from a message's first byte until its headers are complete
        self._head_bytes = 0  # bytes of earlier reads that ended inside the current head
        self._chunk = 0
        self._body_in_chunk = 0
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        upper_bound = self._head_bytes + self._chunk
        self._head_bytes = 0
        if self._refused or (upper_bound > MAX_HEAD_BYTES and self._head_size() > MAX_HEAD_BYTES):
            self._refused = True  # the app never sees this request
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_in_chunk += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self._chunk = len(data)
        self._body_in_chunk = 0
        super().data_received(data)
        if self._in_head and not self._refused and self.parser is not None:  # a head is unfinished
            self._head_bytes += self._chunk - self._body_in_chunk
            self._refused = self._head_bytes > MAX_HEAD_BYTES
        if self._refused and not self.transport.is_closing():
            # while a previous (pipelined) response is still being sent, writing would interleave
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_REFUSAL)
            self.transport.close()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
