"""Durations ("30s", "2m", "90d") and sizes ("5MB", "2Gi") as spec field types.

Values are stored as plain numbers (seconds, bytes) so the rest of cmlplan never parses units; the
JSON Schema still shows people the string forms they may write.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_SIZE_FACTORS = {
    None: 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
    "T": 1000**4, "TB": 1000**4, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Seconds from "30s", "2m", "1.5h", "90d", "250ms" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 2m, 1h or 90d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 2m, 1h or 90d")
        seconds = float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from "5MB", "512Mi", "2Gi" or a bare number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 5MB or 2Gi")
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size; write it like 5MB, 512Mi or 2Gi")
        size = int(float(match.group(1)) * _SIZE_FACTORS[match.group(2)])
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


def format_duration(seconds: float) -> str:
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    # never exponent notation ("1e+06s" would not parse back): 1000000s, 0.25s
    text = str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
    return f"{text}s"


def format_size(size: int) -> str:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "a duration: 30s, 2m, 1h, 90d, or a number of seconds",
        }
    ),
    PlainSerializer(format_duration, return_type=str),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|Ki|Mi|Gi|Ti|K|M|G|T)?\s*$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "a size: 5MB, 512Mi, 2Gi, or a number of bytes",
        }
    ),
    PlainSerializer(format_size, return_type=str),
]
