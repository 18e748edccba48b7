"""Minimal ASGI response helpers: the replica speaks JSON only, with an explicit length."""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]


METRICS_HEADER = b"x-cmlplan-metrics"


async def send_json(send: Send, status: int, body: bytes, metrics: bytes | None = None) -> None:
    """Send a complete JSON response in two ASGI messages; ``metrics`` goes in METRICS_HEADER."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if metrics is not None:
        headers.append((METRICS_HEADER, metrics))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_body(code: str, message: str) -> bytes:
    """The CML error shape, for answers that are not about a prediction."""
    return json.dumps({"success": False, "errors": {code: message}}).encode()


async def read_body(receive: Receive) -> bytes | None:
    """Read the whole request body; None if the client went away first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
