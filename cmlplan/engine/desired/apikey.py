"""ApiKey: a user's key for calling models; the secret is generated (or read) at apply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...specs import Resource
from ..envrefs import fingerprint_value, resolve
from .world import LOGICAL, Builder, constant


def add_apikey(b: Builder, resource: Resource) -> None:
    spec = resource.spec
    attributes: dict[str, Any] = {
        "user": spec.user,
        "expires_in": spec.expires_in,
        "expires_at": spec.expires_at.isoformat() if spec.expires_at else None,
        "value_ref": spec.value,
    }
    secrets: Callable[[], dict[str, str]] = lambda: {}  # noqa: E731
    if spec.value:
        where = f"{resource.origin}: {resource.address}: value"
        attributes["key_hash"] = fingerprint_value(b.salt, spec.value, where, b.environ)
        value = spec.value
        secrets = lambda: {"value": resolve(value, where, b.environ)}  # noqa: E731
    b.add(resource.address, "apikey", LOGICAL, (), constant(attributes), resource.lifecycle, secrets=secrets)
