"""The classic CML example model: add(args) returns the sum of a and b."""

from __future__ import annotations


def _number(args: dict, name: str) -> int | float:
    if name not in args:
        raise ValueError(f'missing field "{name}" (expected {{"a": 3, "b": 5}})')
    value = args[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f'"{name}" must be a number, got {value!r}')
    return value


def add(args: dict) -> dict:
    """{"a": 3, "b": 5} -> {"result": 8}."""
    if not isinstance(args, dict):
        raise ValueError(f'expected a JSON object like {{"a": 3, "b": 5}}, got {type(args).__name__}')
    return {"result": _number(args, "a") + _number(args, "b")}
