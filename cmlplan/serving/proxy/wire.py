"""CML's wire format for ``POST /model``: the access key and the request value from a call.

The body is ``{"accessKey": "...", "request": {...}}``; the key may instead come as the
``?accessKey=`` query parameter. The body is parsed once and only the request value is written
back out, for the replica.
"""

from typing import Any
from urllib.parse import parse_qs

from .codec import InvalidJSON, decode
from .errors import ProxyError


def too_large(limit: int) -> ProxyError:
    return ProxyError(413, "request.too_large", f"request body exceeds {limit} bytes", close=True)


def parse_call(body: bytes, query_string: bytes) -> tuple[str, bytes]:
    """(access key, the request value as JSON) from a CML call. Raises ProxyError 400."""
    try:
        payload, encode = decode(body)
    except InvalidJSON as exc:
        raise ProxyError(400, "request.invalid", f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProxyError(400, "request.invalid", "body must be a JSON object")
    if "request" not in payload:
        raise ProxyError(400, "request.invalid", 'body has no "request" field')
    access_key: Any = payload.get("accessKey")
    if access_key is None and query_string:
        values = parse_qs(query_string.decode("latin-1")).get("accessKey")
        access_key = values[0] if values else None
    if not isinstance(access_key, str) or not access_key:
        raise ProxyError(400, "request.invalid", 'no access key: send "accessKey" in the body or the query')
    return access_key, encode(payload["request"])
