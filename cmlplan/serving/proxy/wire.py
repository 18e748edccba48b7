"""CML's wire format for ``POST /model``: a bounded body read and the access key extraction.

The body is ``{"accessKey": "...", "request": {...}}``; the key may instead come as the
``?accessKey=`` query parameter. Oversize bodies are refused from Content-Length when it is sent
and otherwise as soon as the running byte count passes the limit, never after buffering it all.
"""

import json
from typing import Any
from urllib.parse import parse_qs

from .errors import ClientGone, ProxyError
from .responses import Receive


def too_large(limit: int) -> ProxyError:
    return ProxyError(413, "request.too_large", f"request body exceeds {limit} bytes", close=True)


async def read_body(receive: Receive, content_length: bytes | None, limit: int) -> bytes:
    """The request body, at most limit bytes. Raises ProxyError 413/400 or ClientGone."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise ProxyError(400, "request.invalid", "Content-Length is not a number", close=True) from None
        if declared > limit:
            raise too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise too_large(limit)
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_call(body: bytes, query_string: bytes) -> tuple[str, Any]:
    """(access key, request value) from a CML call. Raises ProxyError 400."""
    try:
        payload = json.loads(body.decode("utf-8"))  # strict: json.loads(bytes) lets encoded surrogates in
    except ValueError as exc:  # also bad UTF-8 and integers of 4300+ digits
        raise ProxyError(400, "request.invalid", f"body is not valid JSON: {exc}") from None
    except RecursionError:  # a few KB of "[" would otherwise be a 500
        raise ProxyError(400, "request.invalid", "body is not valid JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise ProxyError(400, "request.invalid", "body must be a JSON object")
    if "request" not in payload:
        raise ProxyError(400, "request.invalid", 'body has no "request" field')
    access_key = payload.get("accessKey")
    if access_key is None and query_string:
        values = parse_qs(query_string.decode("latin-1")).get("accessKey")
        access_key = values[0] if values else None
    if not isinstance(access_key, str) or not access_key:
        raise ProxyError(400, "request.invalid", 'no access key: send "accessKey" in the body or the query')
    return access_key, payload["request"]
