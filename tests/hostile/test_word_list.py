"""An attacker with a word list and a copy of everything cmlplan wrote learns nothing of a weak secret.

examples/add-numbers with authentication, a database password ``${env:DB_PASSWORD}`` set to a word
from a small list of common passwords, a generated API key and a user-supplied one. A user-supplied
key from the word list is refused by validate and plan (one line, exit 1); a strong one is used for
the flow: validate, plan -out, apply, calls, show (state and plan), output, logs, state show,
history, lineage, models, plan --json and markdown, restart. Then every file under the workspace
except ``.cmlplan/keys/`` (state, journal, backups, routes, the saved plan, supervisord's configs and
logs, build folders and venvs, replica and proxy logs) and every output is searched, for every word
of the list, for: the word itself when it is the secret, and the SHA-256, SHA-1 and MD5 of word,
salt + word and word + salt, as hex (either case), base64 and base64url, whole or cut to 12
characters (the older fingerprints were 8 and 24 hex digits; 12 keeps chance matches out).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("local_e2e_helpers", REPO / "tests" / "providers" / "local" / "localws.py")
assert _spec is not None and _spec.loader is not None
local_e2e = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("local_e2e_helpers", local_e2e)
_spec.loader.exec_module(local_e2e)

WORDS = [w for line in (Path(__file__).parent / "common-passwords.txt").read_text().splitlines() if not line.startswith("#") for w in line.split()]
SECRET_WORD = "sunshine"
STRONG_USER_KEY = "cak_Yq3v7r0xW1pB8kDZ-sL2tQ9uN4mC6eHfJ5aGiKoRbTy"
MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
DOCS = (
    "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\nspec: {user: alice, expires_in: 30d}\n"
    "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-own}\n"
    "spec: {user: alice, value: '${env:ALICE_OWN_KEY}'}\n"
)


PREFIX = 12  # characters of a digest's text form that count as a match (random ones: ~1e-15 a window)
SHORT = 8  # hex digits older cmlplan kept of SHA-256(key) as a key's label; checked outside venvs only
_TOKEN = re.compile(rb"[A-Za-z0-9+/_=-]{%d,}" % PREFIX)
_HEX = re.compile(rb"[0-9a-f]{%d,}" % SHORT)


def needles(salt: str) -> tuple[dict[bytes, str], dict[bytes, str]]:
    """The first PREFIX characters of every text form of every digest an attacker could confirm a
    guess with (whole digests contain them), and the first SHORT hex digits, by what they are."""
    long: dict[bytes, str] = {}
    short: dict[bytes, str] = {}
    for word in WORDS:
        for label, text in (("word", word), ("salt+word", salt + word), ("word+salt", word + salt)):
            for name in ("sha256", "sha1", "md5"):
                digest = hashlib.new(name, text.encode()).digest()
                what = f"{name}({label}) of {word!r}"
                for form in (
                    digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode(),
                    base64.urlsafe_b64encode(digest).decode(),
                ):
                    long[form[:PREFIX].encode()] = what
                short[digest.hex()[:SHORT].encode()] = what + f" ({SHORT} hex digits)"
    return long, short


def written_files(root: Path) -> list[Path]:
    keys = root / ".cmlplan" / "keys"
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and keys not in p.parents]


def _windows(data: bytes, pattern: re.Pattern[bytes], size: int, table: dict[bytes, str]) -> list[str]:
    found = []
    for token in pattern.findall(data):  # each run of the alphabet, each window looked up once
        found += [table[token[i : i + size]] for i in range(len(token) - size + 1) if token[i : i + size] in table]
    return found


def _hits(data: bytes, tables: tuple[dict[bytes, str], dict[bytes, str]], short: bool) -> list[str]:
    found = ["the secret in plaintext"] if SECRET_WORD.encode() in data else []
    found += _windows(data, _TOKEN, PREFIX, tables[0])
    if short:
        found += _windows(data, _HEX, SHORT, tables[1])
    return found


def search(root: Path, outputs: list[str], salt: str) -> tuple[list[str], int, int]:
    """Hits in every file under ``root`` (but the key folder) and in ``outputs``; the file count and size.

    The short check leaves out the venvs pip wrote (millions of hex digits would match by chance)."""
    tables = needles(salt)
    venvs = root / ".cmlplan" / "venvs"
    hits = []
    files = written_files(root)
    size = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        size += len(data)
        hits += [f"{path.relative_to(root)}: {what}" for what in _hits(data, tables, venvs not in path.parents)]
    hits += [f"output: {what}" for what in _hits("\n".join(outputs).encode(), tables, True)]
    return hits, len(files), size


def test_the_search_finds_what_older_cmlplan_wrote(tmp_path: Path) -> None:
    """The check can fail: each form older cmlplan wrote for a weak secret is found."""
    salt = "5f1d3c0a9b7e2d4c6a8b0e1f3d5c7a9b"
    cases = {
        "env_fingerprints": hashlib.sha256((salt + SECRET_WORD).encode()).hexdigest(),  # SHA-256(salt + value)
        "key_fingerprint": hashlib.sha256(b"letmein").hexdigest()[:8],  # unsalted label of a user key
        "env_hash": hashlib.sha256((salt + "password").encode()).hexdigest()[:24],
        "plaintext": f"DB_PASSWORD='{SECRET_WORD}'",
        "base64": base64.b64encode(hashlib.md5(b"hunter2").digest()).decode(),
    }
    for name, value in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"salt": salt, name: value}))
    hits, count, _ = search(tmp_path, [], salt)
    assert count == len(cases)
    for name in cases:
        assert any(hit.startswith(f"{name}.json: ") for hit in hits), (name, hits)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "state.json").write_text(json.dumps({"salt": salt, "x": hashlib.sha256(os.urandom(32)).hexdigest()}))
    assert search(clean, ["no secret here"], salt)[0] == []


@pytest.mark.slow
def test_no_file_or_output_confirms_a_word_from_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SECRET_WORD in WORDS
    monkeypatch.setenv("DB_PASSWORD", SECRET_WORD)
    monkeypatch.delenv("CMLPLAN_FINGERPRINT_KEY", raising=False)
    with local_e2e.live_workspace(REPO / "examples" / "add-numbers", tmp_path / "numbers") as ws:
        ws.replace_in_spec("authentication: false", "authentication: true")
        ws.replace_in_spec("env: {}", "env: {DB_PASSWORD: '${env:DB_PASSWORD}', MODE: fast}")
        ws.set_spec(ws.spec.read_text() + DOCS)
        (ws.dir / ".gitignore").write_text("*.out\n")  # saved plans beside the specs, not in the build

        # a user-supplied key from the word list is refused in one line, and never echoed
        monkeypatch.setenv("ALICE_OWN_KEY", "letmein")
        for command in (("validate",), ("plan",)):
            refused = ws.cli(*command, check=False)
            assert refused.returncode == 1, refused
            [line] = refused.stderr.strip().splitlines()
            assert "apikey.alice-own: spec.value: the key is too weak" in line and "letmein" not in line
        monkeypatch.setenv("ALICE_OWN_KEY", STRONG_USER_KEY)

        ws.cli("validate")
        ws.cli("plan", "-out", "plan.out")
        ws.cli("apply", "plan.out")
        status, body = ws.call(MODEL, {"a": 3, "b": 5}, api_key=ws.key("apikey.alice-ci"))
        assert (status, body.get("response")) == (200, {"result": 8}), body
        status, body = ws.call(MODEL, {"a": 3, "b": 5}, api_key=STRONG_USER_KEY)
        assert status == 200, body
        assert ws.call(MODEL, {"a": 3, "b": 5}, api_key=SECRET_WORD)[0] == 401
        ws.cli("call", MODEL, "--input", '{"a": 1, "b": 2}')
        for args in (
            ("show",), ("show", "--json"), ("show", "plan.out"), ("show", "plan.out", "--json"),
            ("output",), ("output", "--json"), ("logs", MODEL), ("logs", MODEL, "--json"), ("logs", "proxy.default"),
            ("state", "list"), ("state", "show", DEPLOYMENT), ("state", "show", "apikey.alice-own", "--json"),
            ("history", MODEL), ("lineage", MODEL, "-format", "json"), ("models", "--json"),
            ("plan", "--json"), ("plan", "-format", "markdown"), ("plan", "-detailed-exitcode"),
        ):
            ws.cli(*args)
        ws.cli("restart", MODEL)
        ws.cli("plan", "-out", "plan2.out")

        state = json.loads((ws.dir / ".cmlplan" / "state.json").read_text())
        salt = state["salt"]
        fingerprint = state["resources"][DEPLOYMENT]["attributes"]["env_fingerprints"]["DB_PASSWORD"]
        assert fingerprint.startswith("hmac-sha256:")
        routes = (ws.dir / ".cmlplan" / "run" / "routes.json").read_text()
        assert salt in routes  # the attacker has the salt: that is the point of the test

        hits, count, size = search(ws.dir, ws.outputs, salt)
        assert count > 50 and size > 1_000_000, (count, size)  # builds, venv, logs, state, routes, plans
        assert hits == [], hits[:20]

        # the one place the plaintext may be: the key folder (0700) holds the replicas' secrets file
        keys = ws.dir / ".cmlplan" / "keys"
        assert os.stat(keys).st_mode & 0o777 == 0o700
        assert any(SECRET_WORD in p.read_text() for p in (keys / "env").iterdir())

        ws.cli("destroy", "-auto-approve")
        assert not list((keys / "env").iterdir())  # the replicas' secrets files went with them
        hits, _, _ = search(ws.dir, ws.outputs, salt)
        assert hits == [], hits[:20]
