"""A state from before fingerprint keys, on the real local provider: the next apply rewrites its
fingerprints in state alone (same pids, same deployment id), and ${env:} values reach replicas
through their secrets file, never through supervisord's program files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cmlplan.secrets import FingerprintKey
from cmlplan.state.file import FileBackend

pytestmark = pytest.mark.slow

# this folder's conftest by path: a bare `from conftest import` may find another folder's
_spec = importlib.util.spec_from_file_location("local_e2e_helpers", Path(__file__).with_name("localws.py"))
assert _spec is not None and _spec.loader is not None
_helpers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("local_e2e_helpers", _helpers)
_spec.loader.exec_module(_helpers)
EXAMPLES, live_workspace = _helpers.EXAMPLES, _helpers.live_workspace

MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
API_KEY = "apikey.alice-ci"
PASSWORD = "letmein-2026"
API_KEY_DOC = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\nspec: {user: alice, expires_in: 30d}\n"


def _write_as_older_cmlplan(state_path: Path, keys: dict[str, str]) -> str:
    """What cmlplan wrote before fingerprint keys: SHA-256(salt + value), unsalted 8-hex key labels."""
    backend = FileBackend(state_path)
    doc = backend.read()
    assert doc is not None
    legacy = hashlib.sha256((doc.salt + PASSWORD).encode()).hexdigest()
    for address, extra in (
        (DEPLOYMENT, {"env_fingerprints": {"DB_PASSWORD": legacy}}),
        (MODEL, {"access_key_fingerprint": hashlib.sha256(keys[MODEL].encode()).hexdigest()[:8]}),
        (API_KEY, {"key_fingerprint": hashlib.sha256(keys[API_KEY].encode()).hexdigest()[:8]}),
    ):
        resource = doc.resources[address]
        doc.set_resource(address, resource.model_copy(update={"attributes": {**resource.attributes, **extra}}))
    backend.write(doc)
    return legacy


def test_an_older_state_upgrades_in_place_on_the_next_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    with live_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers") as ws:
        ws.replace_in_spec("env: {}", "env: {DB_PASSWORD: '${env:DB_PASSWORD}', MODE: fast}")
        ws.set_spec(ws.spec.read_text() + API_KEY_DOC)
        ws.apply()
        status, body = ws.call(MODEL, {"a": 3, "b": 5})
        assert (status, body["response"]) == (200, {"result": 8}), body

        # the replica has the value in its environment; its supervisord program file does not
        replicas = {p.name: p.pid for p in ws.programs() if p.name.startswith("r.") and p.state in ("RUNNING", "STARTING")}
        assert len(replicas) == 2, ws.programs()
        assert len(replicas) == 2, replicas
        for name, pid in replicas.items():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"DB_PASSWORD={PASSWORD}".encode() in environ and b"MODE=fast" in environ
            conf = (ws.dir / ".cmlplan" / "supervisor" / "programs" / f"{name}.conf").read_text()
            assert PASSWORD not in conf and "MODE='fast'" in conf and "envexec" in conf

        keys = {MODEL: ws.key(MODEL), API_KEY: ws.key(API_KEY)}
        state_path = ws.dir / ".cmlplan" / "state.json"
        legacy = _write_as_older_cmlplan(state_path, keys)
        (ws.dir / ".cmlplan" / "keys" / "fingerprint-key").unlink()  # older cmlplan had none
        before = ws.state_show(DEPLOYMENT)["attributes"]
        pids = {p.name: p.pid for p in ws.programs()}
        assert len(pids) == 3 and all(pids.values()), pids

        planned = ws.cli("plan", "-detailed-exitcode")  # exit 0: nothing running changes
        assert "No changes." in planned.stdout and "State upgrade: apply rewrites what 3 resources" in planned.stdout
        assert ws.plan_json()["state_upgrades"] == [API_KEY, DEPLOYMENT, MODEL]

        applied = ws.apply()
        assert "State upgraded: fingerprints of 3 rewritten." in applied.stdout, applied.stdout
        assert {p.name: p.pid for p in ws.programs()} == pids  # no replica (nor the proxy) restarted
        after = ws.state_show(DEPLOYMENT)["attributes"]
        assert after["deployment_id"] == before["deployment_id"]
        assert [p["name"] for p in after["processes"]] == [p["name"] for p in before["processes"]]

        text = state_path.read_text()
        key = FingerprintKey.from_text((ws.dir / ".cmlplan" / "keys" / "fingerprint-key").read_text())
        state = json.loads(text)
        assert state["resources"][DEPLOYMENT]["attributes"]["env_fingerprints"] == {
            "DB_PASSWORD": key.fingerprint(PASSWORD)
        }
        assert legacy not in text
        for address, value in keys.items():
            assert hashlib.sha256(value.encode()).hexdigest()[:8] not in text, address
        assert "access_key_fingerprint" not in text and '"key_fingerprint"' not in text

        again = ws.cli("plan", "-detailed-exitcode")
        assert "No changes." in again.stdout and "State upgrade" not in again.stdout
        status, body = ws.call(MODEL, {"a": 1, "b": 2})
        assert (status, body["response"]) == (200, {"result": 3}), body
