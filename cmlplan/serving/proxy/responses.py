"""Whole HTTP/1.1 responses as bytes: every proxy answer is a complete body with its length."""

from http import HTTPStatus

JSON = b"application/json"

_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def response(
    status: int, body: bytes, *, content_type: bytes = JSON, close: bool = False, extra: bytes = b""
) -> bytes:
    """Status line, content type and length, ``extra`` header lines (each ending CRLF), body."""
    connection = b"connection: close\r\n" if close else b""
    return b"%scontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n%s" % (
        status_line(status),
        content_type,
        len(body),
        connection,
        extra,
        body,
    )


def head(status: int, length: int, *, content_type: bytes = JSON, close: bool = False, extra: bytes = b"") -> bytes:
    """The status line and headers of ``response``, for a body written after them."""
    connection = b"connection: close\r\n" if close else b""
    return b"%scontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n" % (
        status_line(status),
        content_type,
        length,
        connection,
        extra,
    )


COPY_LIMIT = 64 * 1024  # bodies up to this size are copied into one write with their head

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
