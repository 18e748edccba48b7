"""Generating, hashing, fingerprinting and comparing secrets. Plaintext leaves this module only to be
shown once.

Two kinds of digest stand in for a secret, for two jobs:

- **Key hashes** (``hash_secret``: SHA-256 of salt + key, the salt in state and routes, not secret)
  let the proxy find a key on every request with one fast hash. That is only safe for keys nobody
  can guess: generated keys carry 256 bits, and a user-supplied ApiKey value must be estimated at
  128 bits or more (``key_strength_problem``), so a word list gets nowhere against routes.json.
- **Fingerprints** (``FingerprintKey.fingerprint``: HMAC-SHA256 under the workspace's fingerprint
  key, kept beside the keys and never in state, plans, routes or logs) let a plan see that an
  ``${env:...}`` value changed without showing it. Such values may be weak (a database password),
  so without the key a fingerprint confirms no guess. Each names its key by a short id, so a plan
  made with another key says so instead of calling every secret changed.

Lookups by hash need no constant-time compare; direct comparisons use one (``secrets_equal``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets as _random
from collections.abc import Iterable
from dataclasses import dataclass, field

ACCESS_KEY_PREFIX = "mak_"
API_KEY_PREFIX = "cak_"

FINGERPRINT_PREFIX = "hmac-sha256:"
_KEYED = re.compile(r"^hmac-sha256:([0-9a-f]{8}):[0-9a-f]{64}$")
_LEGACY = re.compile(r"^[0-9a-f]{64}$")  # SHA-256(salt + value), written before fingerprint keys
_KEY_TEXT = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID_LABEL = b"cmlplan fingerprint key id"

MIN_USER_KEY_BITS = 128
# zxcvbn refuses longer input; the estimate of a prefix never exceeds the whole key's entropy
_ESTIMATE_CHARS = 72
GENERATE_KEY_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def generate_secret(prefix: str) -> str:
    return prefix + _random.token_urlsafe(32)


def new_salt() -> str:
    return _random.token_hex(16)


def hash_secret(salt: str, secret: str) -> str:
    """The lookup hash of a key (routes.json, state): fast, so only for keys of 128 bits or more."""
    return hashlib.sha256((salt + secret).encode("utf-8", "surrogatepass")).hexdigest()


def key_label(key_hash: object) -> str | None:
    """Eight hex digits that tell keys apart in output: the start of the key's salted hash, which
    state already holds, so showing them reveals nothing new (keys carry >= 128 bits)."""
    if not isinstance(key_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", key_hash):
        return None
    return key_hash[:8]


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# -- fingerprints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FingerprintKey:
    """The workspace's secret for fingerprints: 32 random bytes, written as 64 hex digits."""

    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> FingerprintKey:
        return cls(_random.token_bytes(32))

    @classmethod
    def from_text(cls, text: str) -> FingerprintKey:
        """Parse the key file's (or CMLPLAN_FINGERPRINT_KEY's) 64 hex digits; ValueError otherwise."""
        text = text.strip()
        if not _KEY_TEXT.match(text):
            raise ValueError("a fingerprint key is 64 lowercase hex digits (e.g. from `openssl rand -hex 32`)")
        return cls(bytes.fromhex(text))

    def to_text(self) -> str:
        return self.secret.hex()

    @property
    def id(self) -> str:
        """Eight hex digits naming this key (an HMAC of a constant: says nothing about the key)."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]

    def fingerprint(self, value: str) -> str:
        digest = hmac.new(self.secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"{FINGERPRINT_PREFIX}{self.id}:{digest}"


def fingerprint_key_id(fingerprint: object) -> str | None:
    """The id of the key a fingerprint was made with; None for anything else (legacy, unknown)."""
    if not isinstance(fingerprint, str):
        return None
    found = _KEYED.match(fingerprint)
    return found.group(1) if found else None


def is_legacy_fingerprint(fingerprint: object) -> bool:
    """A fingerprint from before fingerprint keys: SHA-256(salt + value), confirmable with a word list."""
    return isinstance(fingerprint, str) and bool(_LEGACY.match(fingerprint))


def legacy_fingerprint(salt: str, value: str) -> str:
    """What older cmlplan recorded for ``value``; only computed to recognise (and replace) it."""
    return hash_secret(salt, value)


# -- user-supplied keys ----------------------------------------------------------------------------


def estimated_bits(value: str, context: Iterable[str] = ()) -> float:
    """A conservative estimate of a key's entropy: log2 of zxcvbn's guess count (dictionary words,
    keyboard walks, dates, repeats and the names in ``context`` are counted as the few guesses they are;
    a random string gets about 3.3 bits per character, less than it really has)."""
    from zxcvbn import zxcvbn  # imported when a user-supplied key is checked, not on every command

    guesses = zxcvbn(value[:_ESTIMATE_CHARS], user_inputs=[c for c in context if c])["guesses"]
    return math.log2(max(float(guesses), 1.0))


def key_strength_problem(value: str, context: Iterable[str] = ()) -> str | None:
    """Why ``value`` is too weak to be an API key, in one line (naming no part of it); None if strong.

    The proxy looks keys up by a fast salted hash on every request, so a key must be unguessable by
    itself: below 128 bits, a copy of routes.json or state would let a word list find it.
    """
    bits = estimated_bits(value, context)
    if bits >= MIN_USER_KEY_BITS:
        return None
    return (
        f"the key is too weak: about {int(bits)} bits of entropy by zxcvbn's estimate, {MIN_USER_KEY_BITS} needed"
        f" (its hash is in routes.json and state, so a weak key could be found offline);"
        f" generate one with: {GENERATE_KEY_HINT}"
    )
