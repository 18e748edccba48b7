"""Special attribute values shared by plans and providers: "known after apply" and masked secrets."""

from __future__ import annotations

from typing import Any

UNKNOWN = "(known after apply)"
SENSITIVE = "(sensitive value)"

SENSITIVE_KEYS = ("key_hash", "fingerprint", "secret")


def is_sensitive_key(key: str) -> bool:
    """Attribute names that hold key hashes or secret fingerprints: masked in every rendering."""
    return any(part in key for part in SENSITIVE_KEYS)


def mask(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with sensitive entries masked, for output meant for people."""
    if key and is_sensitive_key(key) and value not in (None, UNKNOWN, {}, []):
        return SENSITIVE
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value
