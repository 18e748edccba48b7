"""The fingerprint key in a team: shared PostgreSQL state, an applier with .cmlplan/keys/ and a CI
runner with only a checkout, as examples/ci sets them up."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_commands import cmlplan

from cmlplan.engine.keys import FINGERPRINT_KEY_ENV
from cmlplan.secrets import FingerprintKey
from cmlplan.state.document import StateDocument

STATE = "state: {backend: postgres, dsn: \"${env:CMLPLAN_STATE_DSN}\", workspace: team}"
DEPLOYMENT = "deployment.numbers/add"


@pytest.fixture
def applier(add_numbers: Path, fake, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CMLPLAN_STATE_DSN", postgres_dsn)
    monkeypatch.setenv("DB_PASSWORD", "sunshine")
    monkeypatch.delenv(FINGERPRINT_KEY_ENV, raising=False)
    spec = add_numbers / "cmlplan.yaml"
    spec.write_text(
        spec.read_text()
        .replace("provider: local", f"provider: local\n  {STATE}", 1)
        .replace("env: {}", "env: {DB_PASSWORD: '${env:DB_PASSWORD}'}")
    )
    return add_numbers


def _runner(applier: Path, tmp_path: Path) -> Path:
    """A CI runner's checkout: the specs and the model's source, no .cmlplan folder."""
    checkout = tmp_path / "runner"
    shutil.copytree(applier, checkout, ignore=shutil.ignore_patterns(".cmlplan"))
    return checkout


def _give_key(folder: Path) -> str:
    """What the docs say to do once for a shared state: make a key (``openssl rand -hex 32``), keep it."""
    key = FingerprintKey.generate().to_text()
    path = folder / ".cmlplan" / "keys" / "fingerprint-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    return key


def test_a_shared_state_never_makes_a_key_of_its_own(applier: Path) -> None:
    refused = cmlplan("apply", "-C", str(applier), "-auto-approve")
    assert refused.code == 1, refused
    [line] = refused.err.strip().splitlines()
    assert f"1 secret value of {DEPLOYMENT} cannot be fingerprinted: the state is shared" in line
    assert "openssl rand -hex 32" in line and FINGERPRINT_KEY_ENV in line
    assert not (applier / ".cmlplan" / "keys" / "fingerprint-key").exists()
    planned = cmlplan("plan", "-C", str(applier))
    assert planned.code == 0 and "cannot be fingerprinted" in planned.out


def test_a_runner_needs_the_key_from_the_environment(applier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _give_key(applier)
    assert cmlplan("apply", "-C", str(applier), "-auto-approve").code == 0
    runner = _runner(applier, tmp_path)

    blind = cmlplan("plan", "-C", str(runner), "-detailed-exitcode")
    assert blind.code == 0 and "No changes." in blind.out, blind  # the drift job stays quiet ...
    warnings = [line for line in blind.out.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and f"1 secret value of {DEPLOYMENT} not compared" in warnings[0]  # ... but says so
    assert not (runner / ".cmlplan" / "keys" / "fingerprint-key").exists()
    as_json = json.loads(cmlplan("plan", "-C", str(runner), "--json").out)
    assert len(as_json["warnings"]) == 1 and as_json["has_changes"] is False
    refused = cmlplan("apply", "-C", str(runner), "-auto-approve")
    assert refused.code == 1 and "cannot apply: 1 secret value" in refused.err and FINGERPRINT_KEY_ENV in refused.err

    monkeypatch.setenv(FINGERPRINT_KEY_ENV, key)
    seeing = cmlplan("plan", "-C", str(runner), "-detailed-exitcode")
    assert seeing.code == 0 and "Warning" not in seeing.out, seeing
    monkeypatch.setenv("DB_PASSWORD", "moonshine")
    changed = cmlplan("plan", "-C", str(runner), "-detailed-exitcode")
    assert changed.code == 2 and f"{DEPLOYMENT} will be replaced" in changed.out, changed.out
    assert cmlplan("apply", "-C", str(runner), "-auto-approve").code == 0
    monkeypatch.delenv(FINGERPRINT_KEY_ENV)
    assert cmlplan("plan", "-C", str(applier), "-detailed-exitcode").code == 0  # the applier's file is that key


def test_an_older_postgres_state_upgrades_on_the_next_apply(
    applier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _give_key(applier)
    assert cmlplan("apply", "-C", str(applier), "-auto-approve").code == 0
    (applier / ".cmlplan" / "keys" / "fingerprint-key").unlink()
    state = StateDocument.from_json(cmlplan("state", "pull", "-C", str(applier)).out, "pull")
    legacy = hashlib.sha256((state.salt + "sunshine").encode()).hexdigest()
    resource = state.resources[DEPLOYMENT]
    attributes = {**resource.attributes, "env_fingerprints": {"DB_PASSWORD": legacy}}
    state.set_resource(DEPLOYMENT, resource.model_copy(update={"attributes": attributes}))
    older = state.model_copy(update={"serial": state.serial + 1})
    (tmp_path / "older.json").write_text(older.to_json())  # not in the model's source folder
    assert cmlplan("state", "push", str(tmp_path / "older.json"), "-C", str(applier)).code == 0

    unkeyed = cmlplan("plan", "-C", str(applier), "-detailed-exitcode")  # compared the old way, kept as it is
    assert unkeyed.code == 0 and "State upgrade" not in unkeyed.out and "Warning" not in unkeyed.out, unkeyed
    monkeypatch.setenv(FINGERPRINT_KEY_ENV, FingerprintKey.generate().to_text())  # made for the upgrade

    planned = cmlplan("plan", "-C", str(applier), "-detailed-exitcode")
    assert planned.code == 0 and "State upgrade" in planned.out, planned
    applied = cmlplan("apply", "-C", str(applier), "-auto-approve")
    assert applied.code == 0 and "State upgraded: fingerprints of 1 rewritten." in applied.out, applied
    pulled = cmlplan("state", "pull", "-C", str(applier)).out
    assert legacy not in pulled and "hmac-sha256:" in pulled
    assert "State upgrade" not in cmlplan("plan", "-C", str(applier)).out
