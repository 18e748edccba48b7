"""JSON for the request path: orjson when importable, else the stdlib; both strict the same way.

Strict: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON and are refused, as are invalid UTF-8,
a byte order mark and nesting too deep to parse. orjson turns an integer past 64 bits into a float,
so a body holding a run of 19 or more digits takes the stdlib path, which keeps such integers exact
(up to Python's 4,300-digit limit) for the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the proxy's package list ships orjson
    orjson = None  # type: ignore[assignment]

_LONG_INTEGER = re.compile(rb"\d{19}")

Encoder = Callable[[Any], bytes]


class InvalidJSON(ValueError):
    """The body is not strict JSON; the message says why in one line."""


def decode(body: bytes) -> tuple[Any, Encoder]:
    """The parsed value and the encoder that writes its parts back without losing precision."""
    if orjson is not None and _LONG_INTEGER.search(body) is None:
        try:
            return orjson.loads(body), orjson.dumps
        except orjson.JSONDecodeError as exc:
            raise InvalidJSON(str(exc)) from None
    return _std_decode(body), _std_encode


def encode(value: Any) -> bytes:
    """Compact JSON of a value the proxy built itself (health, errors)."""
    if orjson is not None:
        return orjson.dumps(value)
    return _std_encode(value)


def _std_decode(body: bytes) -> Any:
    try:
        # decode first: json.loads(bytes) would let encoded lone surrogates in
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except ValueError as exc:  # also bad UTF-8 and integers of 4300+ digits
        raise InvalidJSON(str(exc)) from None


def _std_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
