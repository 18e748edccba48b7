"""No plaintext key in any file cmlplan writes, nor in any output, over a whole local-provider flow.

examples/add-numbers with ``authentication: true`` and an ApiKey, on a free port: apply, call (CLI
and direct HTTP), plan -out, show (state and plan), output, state list/show, destroy. Every key
file in ``.cmlplan/keys/`` is read before destroy; then every file under the workspace except
``.cmlplan/keys/`` (state, backups, saved plan, build logs and metadata, supervisord config, programs
and logs, replica and proxy logs, routes) is searched for each key, before and after destroy, as is
every captured stdout and stderr. Keys are also searched in their hex form and the form JSON would
escape them to, in case a log wrote them re-encoded.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("local_e2e_helpers", REPO / "tests" / "providers" / "local" / "localws.py")
assert _spec is not None and _spec.loader is not None
local_e2e = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("local_e2e_helpers", local_e2e)
_spec.loader.exec_module(local_e2e)

API_KEY_DOC = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\nspec: {user: alice, expires_in: 30d}\n"
MODEL = "model.numbers/add"


def _written_files(root: Path) -> list[Path]:
    keys = root / ".cmlplan" / "keys"
    files = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or keys in path.parents:
            continue  # is_file() is False for supervisord's socket too
        files.append(path)
    return files


def _needles(secrets: set[str]) -> dict[bytes, str]:
    needles = {}
    for secret in secrets:
        for form in (secret, secret.encode().hex(), json.dumps(secret)[1:-1]):
            needles[form.encode()] = secret[:6] + "..."
        needles[secret[4:].encode()] = secret[:6] + "...(body)"  # without the mak_/cak_ prefix
    return needles


def _grep(root: Path, secrets: set[str]) -> tuple[list[str], int]:
    needles = _needles(secrets)
    hits = []
    files = _written_files(root)
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{path.relative_to(root)} holds {name}" for needle, name in needles.items() if needle in data]
    return hits, len(files)


def test_no_plaintext_key_in_any_written_file_or_output(tmp_path: Path) -> None:
    source = REPO / "examples" / "add-numbers"
    with local_e2e.live_workspace(source, tmp_path / "numbers") as ws:
        ws.replace_in_spec("authentication: false", "authentication: true")
        ws.set_spec(ws.spec.read_text() + API_KEY_DOC)
        ws.apply()
        access_key = ws.key(MODEL)
        api_key = ws.key("apikey.alice-ci")
        assert access_key.startswith("mak_") and api_key.startswith("cak_")

        # the model works with the keys, and refuses without the API key
        status, body = ws.call(MODEL, {"a": 3, "b": 5}, api_key=api_key)
        assert status == 200, body
        status, body = ws.call(MODEL, {"a": 3, "b": 5})
        assert status == 401, body

        ws.cli("call", MODEL, "--input", '{"a": 1, "b": 2}')
        ws.cli("plan", "-out", "plan.out")
        ws.cli("show")
        ws.cli("show", "plan.out")
        ws.cli("show", "--json")
        ws.cli("show", "plan.out", "--json")
        ws.cli("plan", "--json")
        ws.cli("plan", "--format", "markdown")
        ws.cli("output")
        ws.cli("state", "list")
        ws.cli("state", "show", MODEL)
        ws.cli("state", "show", "apikey.alice-ci")
        ws.cli("validate")
        ws.collect_keys()
        secrets = set(ws.secrets)
        assert {access_key, api_key} <= secrets

        hits, count = _grep(ws.dir, secrets)
        assert count > 10, "too few files to prove anything"
        assert (ws.dir / ".cmlplan" / "run" / "routes.json").exists()
        assert hits == [], "before destroy"

        ws.cli("destroy", "-auto-approve")
        hits, _ = _grep(ws.dir, secrets)
        assert hits == [], "after destroy"

        outputs = "\n".join(ws.outputs)
        assert outputs.strip(), "no output was captured"
        leaked = [name for needle, name in _needles(secrets).items() if needle.decode() in outputs]
        assert leaked == [], "a key was printed"
