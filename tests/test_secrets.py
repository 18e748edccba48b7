"""Tests for key generation and the hashes that stand in for keys in state."""

from __future__ import annotations

import base64
import hashlib
import re

from cmlplan.secrets import fingerprint, generate_secret, hash_secret, secrets_equal


def test_generated_secret_has_prefix_and_256_bits_of_randomness() -> None:
    secret = generate_secret("mak_")
    assert secret.startswith("mak_")
    body = secret.removeprefix("mak_")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body)
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) * 8 >= 256


def test_generated_secrets_are_unique() -> None:
    assert len({generate_secret("k_") for _ in range(1000)}) == 1000


def test_hash_secret_is_salted_sha256() -> None:
    assert hash_secret("ab12", "mak_x") == hashlib.sha256(b"ab12mak_x").hexdigest()
    assert hash_secret("ab12", "mak_x") != hash_secret("cd34", "mak_x")
    assert "mak_x" not in hash_secret("ab12", "mak_x")


def test_fingerprint_is_short_stable_hex() -> None:
    assert fingerprint("mak_x") == hashlib.sha256(b"mak_x").hexdigest()[:8]
    assert re.fullmatch(r"[0-9a-f]{8}", fingerprint(generate_secret("mak_")))


def test_secrets_equal() -> None:
    assert secrets_equal("mak_abc", "mak_abc")
    assert not secrets_equal("mak_abc", "mak_abd")
    assert not secrets_equal("mak_abc", "mak_ab")
    assert secrets_equal("clé", "clé")  # non-ASCII does not raise
