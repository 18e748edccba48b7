"""Generating, hashing and comparing keys. Plaintext keys leave this module only to be shown once.

Keys carry at least 256 bits of entropy, so a salted SHA-256 (salt kept in state, not secret) is
as strong as the key space; lookups by hash need no constant-time compare, direct comparisons use one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random

ACCESS_KEY_PREFIX = "mak_"
API_KEY_PREFIX = "cak_"


def generate_secret(prefix: str) -> str:
    return prefix + _random.token_urlsafe(32)


def new_salt() -> str:
    return _random.token_hex(16)


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


def fingerprint(secret: str) -> str:
    """Eight hex digits that tell keys apart in output without revealing them."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
