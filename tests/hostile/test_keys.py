"""Keys: entropy, no timing oracle, expiry and revocation, project isolation, no admin surface.

Why the proxy's key lookup is not a timing oracle: the proxy never compares a presented key with
a stored one. It computes ``sha256(salt + presented)`` and looks that digest up in a dict. The
dict's string comparison may stop at the first differing byte, but what it compares is a digest
the attacker cannot steer: changing one character of a guess changes the whole digest, so the
time taken reveals nothing about how close the guess is to a real key (the attacker would need a
SHA-256 preimage to aim at a prefix). Direct comparisons of secrets (``cmlplan.secrets``) use
``hmac.compare_digest``; an AST scan below keeps ``==`` on secret-looking names out of the code.
"""

from __future__ import annotations

import ast
import math
import re
import signal
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cmlplan.secrets import ACCESS_KEY_PREFIX, API_KEY_PREFIX, generate_secret, secrets_equal
from cmlplan.serving.proxy.__main__ import parse_args

REPO = Path(__file__).resolve().parents[2]
URLSAFE = set(string.ascii_letters + string.digits + "-_")


# --- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [ACCESS_KEY_PREFIX, API_KEY_PREFIX])
def test_generated_keys_have_at_least_128_bits(prefix: str) -> None:
    keys = [generate_secret(prefix) for _ in range(10_000)]
    assert len(set(keys)) == len(keys)
    for key in keys[:200]:
        assert key.startswith(prefix)
        body = key[len(prefix) :]
        assert set(body) <= URLSAFE, key
        assert (len(body) - 1) * math.log2(len(URLSAFE)) >= 128, key  # token_urlsafe(32): 43 chars, 256 bits
    # every position varies: the random part is not a counter or a timestamp with a random tail
    bodies = [key[len(prefix) :] for key in keys]
    length = min(len(b) for b in bodies)
    for position in range(length - 1):
        assert len({b[position] for b in bodies}) > 32, f"position {position} barely varies"
    assert len({b[length - 1] for b in bodies}) >= 16  # base64 of 32 bytes: the last char holds 4 bits


def test_secrets_equal_is_constant_time_compare() -> None:
    assert secrets_equal("cak_abc", "cak_abc")
    assert not secrets_equal("cak_abc", "cak_abd")
    source = (REPO / "cmlplan" / "secrets.py").read_text()
    assert "hmac.compare_digest" in source


# --- no == on secrets -----------------------------------------------------------------------------

_SECRETISH = re.compile(r"(secret|token|passw|api_?key|access_?key|authorization|bearer|(^|_)key$|(^|_)hash$)", re.I)
SCANNED = [
    *sorted((REPO / "cmlplan" / "serving").rglob("*.py")),
    REPO / "cmlplan" / "secrets.py",
    REPO / "cmlplan" / "providers" / "logical.py",
]


def _names(node: ast.AST) -> list[str]:
    """Identifiers an operand is made of: x, obj.x, x[...], x.lower(), d.get('x')."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr, *_names(node.value)]
    if isinstance(node, ast.Subscript):
        return _names(node.value)
    if isinstance(node, ast.Call):
        literal = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        return [*literal, *_names(node.func)]
    return []


def _public(node: ast.AST) -> bool:
    """None, a literal, or an UPPER_CASE module constant (a sentinel or prefix, never a secret)."""
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.Name) and node.id.lstrip("_").isupper()


def secret_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if not isinstance(op, ast.Eq | ast.NotEq) or _public(left) or _public(right):
                continue
            if any(_SECRETISH.search(name) for name in _names(left) + _names(right)):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_secret_is_compared_with_double_equals() -> None:
    problems = [hit for path in SCANNED for hit in secret_comparisons(path)]
    assert problems == []


def test_the_scan_would_catch_one(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "def check(api_key, stored):\n    return api_key == stored.key_hash\n"
        "def fine(kind, value):\n    return kind == 'apikey' or value.key_hash == UNKNOWN or kind != value\n"
    )
    hits = secret_comparisons(sample)
    assert len(hits) == 1 and ":2:" in hits[0], hits


# --- the proxy: expiry, revocation, isolation, no admin surface ------------------------------------

FREE = "mak_keys-free"
IRIS = "mak_keys-iris"
NUMBERS = "mak_keys-numbers"
ALICE = "cak_keys-alice"  # collaborator of iris only
BOB = "cak_keys-bob"  # collaborator of numbers only
OLD = "cak_keys-expired"


def _routes(serving: Any, replica: Any, *, generation: int = 1, drop: tuple[str, ...] = ()) -> Path:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    api_keys = {
        ALICE: {"name": "alice-ci", "user": "alice", "expires_at": future},
        BOB: {"name": "bob-ci", "user": "bob", "expires_at": None},
        OLD: {"name": "alice-old", "user": "alice", "expires_at": past},
    }
    models = {
        FREE: serving.model_entry("model.iris/free", [replica], project="iris"),
        IRIS: serving.model_entry("model.iris/add", [replica], authentication=True, project="iris"),
        NUMBERS: serving.model_entry("model.numbers/add", [replica], authentication=True, project="numbers"),
    }
    return serving.write_routes(
        serving.tmp / "routes.json",
        {k: v for k, v in models.items() if k not in drop},
        api_keys={k: v for k, v in api_keys.items() if k not in drop},
        projects={"iris": {"alice": "owner"}, "numbers": {"bob": "owner"}},
        generation=generation,
    )


@pytest.fixture
def keyed(serving: Any) -> tuple[Any, Any]:
    replica = serving.replica("add")
    return serving.proxy(_routes(serving, replica)), replica


def _call(serving: Any, proxy: Any, key: str, api_key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return serving.call_model(proxy, key, {"a": 1, "b": 2}, headers=headers)


def _code(reply: Any) -> str:
    return next(iter(reply.body["errors"]))


@pytest.mark.slow
def test_expired_and_revoked_keys_are_refused(serving: Any, keyed: tuple[Any, Any]) -> None:
    proxy, replica = keyed
    assert _call(serving, proxy, IRIS, ALICE).status == 200
    reply = _call(serving, proxy, IRIS, OLD)
    assert (reply.status, _code(reply)) == (403, "auth.expired")
    # revoke alice's key and the iris model's access key: gone from the table after a SIGHUP
    _routes(serving, replica, generation=2, drop=(ALICE, FREE))
    serving.reload(proxy, 2)
    reply = _call(serving, proxy, IRIS, ALICE)
    assert (reply.status, _code(reply)) == (401, "auth.invalid")
    reply = _call(serving, proxy, FREE, None)
    assert (reply.status, _code(reply)) == (404, "model.not_found")
    # a near miss of a valid key is just invalid
    reply = _call(serving, proxy, NUMBERS, BOB[:-1] + ("x" if BOB[-1] != "x" else "y"))
    assert (reply.status, _code(reply)) == (401, "auth.invalid")
    assert _call(serving, proxy, NUMBERS, BOB).status == 200


@pytest.mark.slow
def test_a_collaborator_of_one_project_cannot_call_another_projects_model(
    serving: Any, keyed: tuple[Any, Any]
) -> None:
    proxy, _ = keyed
    assert _call(serving, proxy, IRIS, ALICE).status == 200
    assert _call(serving, proxy, NUMBERS, BOB).status == 200
    for key, api_key in ((NUMBERS, ALICE), (IRIS, BOB)):
        reply = _call(serving, proxy, key, api_key)
        assert (reply.status, _code(reply)) == (403, "auth.forbidden"), reply.body
    # no header, a non-bearer scheme, an empty bearer: 401
    for headers in ({}, {"Authorization": f"Basic {ALICE}"}, {"Authorization": "Bearer "}, {"Authorization": ALICE}):
        reply = serving.call_model(proxy, IRIS, {"a": 1, "b": 2}, headers=headers)
        assert reply.status == 401, (headers, reply.body)
    # an API key is not an access key, and an access key is not an API key
    assert _call(serving, proxy, ALICE, ALICE).status == 404
    assert _call(serving, proxy, IRIS, IRIS).status == 401


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/reload"), ("GET", "/reload"), ("POST", "/admin"), ("GET", "/admin"), ("POST", "/admin/reload"),
        ("GET", "/routes"), ("PUT", "/routes"), ("POST", "/shutdown"), ("GET", "/debug"), ("GET", "/config"),
        ("GET", "/keys"), ("GET", "/docs"), ("GET", "/openapi.json"), ("POST", "/model/reload"),
        ("GET", "/healthz/../routes"),
    ],
)
def test_the_proxy_has_no_admin_endpoint(serving: Any, keyed: tuple[Any, Any], method: str, path: str) -> None:
    proxy, _ = keyed
    reply = serving.http(method, proxy.url + path, b"{}" if method in ("POST", "PUT") else None)
    assert reply.status == 404, (method, path, reply.raw)
    assert _call(serving, proxy, IRIS, ALICE).status == 200


@pytest.mark.slow
def test_reload_is_sighup_only_and_the_proxy_listens_only_where_told(serving: Any, keyed: tuple[Any, Any]) -> None:
    proxy, replica = keyed
    port = int(proxy.url.rsplit(":", 1)[1])
    listening = _listeners(port)
    assert listening == {("127.0.0.1", port)}, listening
    _routes(serving, replica, generation=5)
    proxy.signal(signal.SIGHUP)
    serving.wait_until(lambda: serving.http("GET", proxy.url + "/healthz").body.get("generation") == 5)


def test_the_proxy_binds_loopback_by_default() -> None:
    assert parse_args(["--routes", "r.json"]).host == "127.0.0.1"
    from cmlplan.specs.proxy import ProxySpec

    assert ProxySpec.model_fields["host"].default == "127.0.0.1"


def _listeners(port: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on port, from /proc/net/tcp and tcp6."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:
                continue
            if v6:
                found.add((f"v6:{address}", port))
            else:
                octets = bytes.fromhex(address)[::-1]
                found.add((".".join(str(b) for b in octets), port))
    return found
