"""Tests for key generation, key hashes, fingerprints and the strength check of user-supplied keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as stdlib_secrets

import pytest

from cmlplan.secrets import (
    MIN_USER_KEY_BITS,
    FingerprintKey,
    estimated_bits,
    fingerprint_key_id,
    generate_secret,
    hash_secret,
    is_legacy_fingerprint,
    key_label,
    key_strength_problem,
    legacy_fingerprint,
    secrets_equal,
)


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


def test_key_label_is_the_start_of_the_salted_hash_only() -> None:
    digest = hash_secret("ab12", "mak_x")
    assert key_label(digest) == digest[:8]
    # never the unsalted SHA-256 older cmlplan stored (an offline oracle for a weak key)
    assert key_label(digest) != hashlib.sha256(b"mak_x").hexdigest()[:8]
    assert key_label(None) is None and key_label("(known after apply)") is None


def test_fingerprint_is_hmac_sha256_under_the_key_and_names_the_key() -> None:
    key = FingerprintKey.generate()
    value = "hunter2"
    found = key.fingerprint(value)
    expected = hmac.new(key.secret, value.encode(), hashlib.sha256).hexdigest()
    assert found == f"hmac-sha256:{key.id}:{expected}"
    assert fingerprint_key_id(found) == key.id
    assert re.fullmatch(r"[0-9a-f]{8}", key.id)
    # no unkeyed digest of the value appears in it
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
        assert digest(value.encode()).hexdigest() not in found
    other = FingerprintKey.generate()
    assert other.fingerprint(value) != found and other.id != key.id
    assert key.fingerprint(value) == found  # stable


def test_fingerprint_key_text_round_trip_and_refusals() -> None:
    key = FingerprintKey.generate()
    assert FingerprintKey.from_text(key.to_text() + "\n") == key
    assert key.to_text() not in repr(key)
    for bad in ("", "abc", "g" * 64, "A" * 64, "0" * 63, "0" * 65):
        with pytest.raises(ValueError, match="64 lowercase hex digits"):
            FingerprintKey.from_text(bad)


def test_legacy_fingerprints_are_recognised() -> None:
    old = legacy_fingerprint("ab12", "hunter2")
    assert old == hashlib.sha256(b"ab12hunter2").hexdigest()
    assert is_legacy_fingerprint(old)
    assert not is_legacy_fingerprint(FingerprintKey.generate().fingerprint("hunter2"))
    assert fingerprint_key_id(old) is None
    assert not is_legacy_fingerprint(None) and not is_legacy_fingerprint("(known after apply)")


@pytest.mark.parametrize(
    "weak",
    [
        "hunter2",
        "correcthorsebatterystaple",
        "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
        "a" * 100,
        "alice-ci-production-key-2026-do-not-share",
        stdlib_secrets.token_hex(16),  # 128 random bits, but zxcvbn credits hex with less: refused, conservatively
    ],
)
def test_weak_user_keys_are_refused_with_a_hint_that_names_no_part_of_them(weak: str) -> None:
    problem = key_strength_problem(weak, ("alice-ci", "alice"))
    assert problem is not None
    assert "128 needed" in problem and "secrets.token_urlsafe(32)" in problem
    assert "\n" not in problem
    assert weak not in problem and weak[:6] not in problem


@pytest.mark.parametrize(
    "strong",
    [
        stdlib_secrets.token_urlsafe(32),
        "cak_" + stdlib_secrets.token_urlsafe(32),
        stdlib_secrets.token_hex(32),
        stdlib_secrets.token_urlsafe(80),  # past zxcvbn's 72 characters: estimated on a prefix
    ],
)
def test_strong_user_keys_pass(strong: str) -> None:
    assert key_strength_problem(strong) is None
    assert estimated_bits(strong) >= MIN_USER_KEY_BITS


def test_context_words_lower_the_estimate() -> None:
    value = "zebra-ci-zebra-ci-2031-Q3-x"
    assert estimated_bits(value, ("zebra-ci",)) < estimated_bits(value)


def test_secrets_equal() -> None:
    assert secrets_equal("mak_abc", "mak_abc")
    assert not secrets_equal("mak_abc", "mak_abd")
    assert not secrets_equal("mak_abc", "mak_ab")
    assert secrets_equal("clé", "clé")  # non-ASCII does not raise
