"""Fingerprints of ${env:...} values through plan and apply (FakeProvider): keyed by the workspace's
fingerprint key, older forms upgraded in state without a redeploy, and a plan without the key that
says so in one line while apply refuses."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from cmlplan.engine.keys import FINGERPRINT_KEY_ENV, FingerprintKeyError
from cmlplan.errors import CmlplanError
from cmlplan.providers.fake import FakeProvider
from cmlplan.secrets import FingerprintKey, fingerprint_key_id, hash_secret

Engine = Any  # tests/conftest.py's Engine (a bare `from conftest import` may find another conftest)
MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
PASSWORD = "hunter2"  # weak on purpose: its fingerprint must not confirm it


@pytest.fixture
def secret_engine(engine: Engine) -> Engine:
    spec = engine.directory / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("env: {}", "env: {DB_PASSWORD: '${env:DB_PASSWORD}', MODE: fast}"))
    engine.environ = {"DB_PASSWORD": PASSWORD}
    return engine


def _state(engine: Engine) -> dict:
    return json.loads((engine.directory / ".cmlplan" / "state.json").read_text())


def _key_file(engine: Engine) -> Path:
    return engine.directory / ".cmlplan" / "keys" / "fingerprint-key"


def _actions(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.address: c.action.value for c in run.plan.changes if c.action.changes}


def test_first_apply_creates_the_key_and_records_a_keyed_fingerprint(secret_engine: Engine) -> None:
    run, report = secret_engine.apply()
    assert report.ok
    key_file = _key_file(secret_engine)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key = FingerprintKey.from_text(key_file.read_text())
    assert any("created the workspace's fingerprint key" in w for w in run.plan.warnings)
    state = _state(secret_engine)
    recorded = state["resources"][DEPLOYMENT]["attributes"]["env_fingerprints"]["DB_PASSWORD"]
    assert recorded == key.fingerprint(PASSWORD) and fingerprint_key_id(recorded) == key.id
    text = json.dumps(state)
    assert key.to_text() not in text and PASSWORD not in text
    assert hashlib.sha256((state["salt"] + PASSWORD).encode()).hexdigest() not in text
    again = secret_engine.plan()
    assert _actions(again) == {} and not again.plan.warnings and again.fingerprint_problem is None


def test_a_changed_secret_replaces_the_deployment(secret_engine: Engine) -> None:
    secret_engine.apply()
    secret_engine.environ["DB_PASSWORD"] = "hunter3"
    run = secret_engine.plan()
    assert _actions(run) == {DEPLOYMENT: "create-then-delete"}
    assert run.plan.change_for(DEPLOYMENT).replace_paths == ("env_fingerprints.DB_PASSWORD",)


def _make_legacy(engine: Engine, fake: FakeProvider, value: str = PASSWORD) -> dict:
    """Rewrite state as older cmlplan wrote it (the fake world keeps what it was given: the real
    providers read recorded attributes such as env_fingerprints back from state, not from the world)."""
    path = engine.directory / ".cmlplan" / "state.json"
    state = json.loads(path.read_text())
    legacy = hashlib.sha256((state["salt"] + value).encode()).hexdigest()
    state["resources"][DEPLOYMENT]["attributes"]["env_fingerprints"]["DB_PASSWORD"] = legacy
    state["resources"][MODEL]["attributes"]["access_key_fingerprint"] = "ab12cd34"
    path.write_text(json.dumps(state, indent=2))
    _key_file(engine).unlink()  # older cmlplan had no fingerprint key
    return state


def test_a_legacy_state_upgrades_on_apply_without_touching_the_deployment(secret_engine: Engine, fake: FakeProvider) -> None:
    secret_engine.apply()
    before = _make_legacy(secret_engine, fake)
    deployment_id = before["resources"][DEPLOYMENT]["attributes"]["deployment_id"]
    run = secret_engine.plan()
    assert _actions(run) == {} and not run.plan.has_changes
    assert run.plan.upgraded == (DEPLOYMENT, MODEL)
    fake.calls.clear()
    run, report = secret_engine.apply()
    assert report.ok and report.upgraded == 2 and fake.calls == []
    state = _state(secret_engine)
    key = FingerprintKey.from_text(_key_file(secret_engine).read_text())
    deployment = state["resources"][DEPLOYMENT]["attributes"]
    assert deployment["env_fingerprints"]["DB_PASSWORD"] == key.fingerprint(PASSWORD)
    assert deployment["deployment_id"] == deployment_id
    assert "access_key_fingerprint" not in state["resources"][MODEL]["attributes"]
    assert state["serial"] == before["serial"] + 1
    after = secret_engine.plan()
    assert _actions(after) == {} and after.plan.upgraded == ()


def test_a_legacy_fingerprint_of_another_value_is_a_change(secret_engine: Engine, fake: FakeProvider) -> None:
    secret_engine.apply()
    _make_legacy(secret_engine, fake, value="an older password")
    run = secret_engine.plan()
    assert _actions(run) == {DEPLOYMENT: "create-then-delete"}
    assert run.plan.upgraded == (MODEL,)  # only the dropped unsalted label


def test_without_the_key_a_plan_says_so_in_one_line_and_apply_refuses(secret_engine: Engine) -> None:
    secret_engine.apply()
    key = FingerprintKey.from_text(_key_file(secret_engine).read_text())
    _key_file(secret_engine).unlink()
    secret_engine.environ["DB_PASSWORD"] = "changed, but nobody can tell"
    run = secret_engine.plan()
    assert _actions(run) == {}  # not shown as changed ...
    [warning] = run.plan.warnings  # ... and not silently skipped
    assert "\n" not in warning
    assert f"1 secret value of {DEPLOYMENT} not compared (recorded with fingerprint key {key.id})" in warning
    assert "there is no fingerprint key here" in warning and FINGERPRINT_KEY_ENV in warning
    assert not _key_file(secret_engine).exists(), "a new key would not match what state records"
    with pytest.raises(FingerprintKeyError, match=r"^cannot apply: 1 secret value of deployment"):
        secret_engine.apply()


def test_the_key_can_come_from_the_environment(secret_engine: Engine) -> None:
    secret_engine.apply()
    text = _key_file(secret_engine).read_text()
    _key_file(secret_engine).unlink()
    secret_engine.environ[FINGERPRINT_KEY_ENV] = text.strip()
    run = secret_engine.plan()
    assert _actions(run) == {} and run.plan.warnings == () and run.fingerprint_problem is None
    secret_engine.environ["DB_PASSWORD"] = "hunter3"
    assert _actions(secret_engine.plan()) == {DEPLOYMENT: "create-then-delete"}


def test_another_key_is_named_and_refused(secret_engine: Engine) -> None:
    secret_engine.apply()
    recorded = FingerprintKey.from_text(_key_file(secret_engine).read_text())
    other = FingerprintKey.generate()
    secret_engine.environ[FINGERPRINT_KEY_ENV] = other.to_text()
    run = secret_engine.plan()
    [warning] = run.plan.warnings
    assert f"recorded with fingerprint key {recorded.id}" in warning
    assert f"the fingerprint key here ({FINGERPRINT_KEY_ENV}) is {other.id}" in warning
    with pytest.raises(FingerprintKeyError):
        secret_engine.apply()


def test_a_lost_key_is_recovered_by_replacing_what_holds_its_fingerprints(secret_engine: Engine) -> None:
    secret_engine.apply()
    old = FingerprintKey.from_text(_key_file(secret_engine).read_text())
    _key_file(secret_engine).unlink()
    run, report = secret_engine.apply(replace=(DEPLOYMENT,))
    assert report.ok and _actions(run) == {DEPLOYMENT: "create-then-delete"}
    new = FingerprintKey.from_text(_key_file(secret_engine).read_text())
    assert new.id != old.id
    recorded = _state(secret_engine)["resources"][DEPLOYMENT]["attributes"]["env_fingerprints"]["DB_PASSWORD"]
    assert recorded == new.fingerprint(PASSWORD)
    assert _actions(secret_engine.plan()) == {}


def test_a_malformed_key_is_a_one_line_error(secret_engine: Engine) -> None:
    secret_engine.environ[FINGERPRINT_KEY_ENV] = "not-a-key"
    with pytest.raises(FingerprintKeyError, match=rf"^{FINGERPRINT_KEY_ENV}: a fingerprint key is 64 lowercase hex"):
        secret_engine.plan()


def test_specs_without_secret_values_never_create_a_key(engine: Engine) -> None:
    engine.apply()
    assert not (engine.directory / ".cmlplan" / "keys" / "fingerprint-key").exists()


# -- user-supplied API keys -------------------------------------------------------------------------

API_KEY_DOC = (
    "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\n"
    "spec: {user: alice, value: '${env:ALICE_KEY}'}\n"
)
STRONG = "Yq3v7r0xW1pB8kDZ-sL2tQ9uN4mC6eHfJ5aGiKoRbTy"


@pytest.fixture
def keyed_engine(engine: Engine) -> Engine:
    spec = engine.directory / "cmlplan.yaml"
    spec.write_text(spec.read_text() + API_KEY_DOC)
    engine.environ = {"ALICE_KEY": STRONG}
    return engine


def test_a_strong_user_key_is_hashed_as_the_proxy_looks_it_up(keyed_engine: Engine) -> None:
    keyed_engine.apply()
    state = _state(keyed_engine)
    attributes = state["resources"]["apikey.alice-ci"]["attributes"]
    assert attributes["key_hash"] == hash_secret(state["salt"], STRONG)
    assert "key_fingerprint" not in attributes and STRONG not in json.dumps(state)
    assert _actions(keyed_engine.plan()) == {}
    keyed_engine.environ["ALICE_KEY"] = STRONG[::-1]
    assert _actions(keyed_engine.plan()) == {"apikey.alice-ci": "update", "proxy.default": "update"}


@pytest.mark.parametrize("weak", ["hunter2", "correcthorsebatterystaple", "alice-ci-alice-ci-alice-ci-2026"])
def test_a_weak_user_key_is_refused_in_one_line_naming_the_spec(keyed_engine: Engine, weak: str) -> None:
    keyed_engine.environ["ALICE_KEY"] = weak
    with pytest.raises(CmlplanError) as caught:
        keyed_engine.plan()
    message = str(caught.value)
    assert "\n" not in message and weak not in message
    assert "cmlplan.yaml:34:1: apikey.alice-ci: spec.value: the key is too weak" in message
    assert "secrets.token_urlsafe(32)" in message


def test_legacy_docker_environment_hashes_of_secret_holding_replicas_are_dropped(secret_engine: Engine) -> None:
    secret_engine.apply()
    path = secret_engine.directory / ".cmlplan" / "state.json"
    state = json.loads(path.read_text())
    processes = state["resources"][DEPLOYMENT]["attributes"]["processes"]
    for process in processes:
        process["env_hash"] = "0123456789abcdef01234567"  # SHA-256(salt + whole env)[:24], secrets included
    path.write_text(json.dumps(state, indent=2))
    run = secret_engine.plan()
    assert _actions(run) == {} and run.plan.drift == () and run.plan.upgraded == (DEPLOYMENT,)
    _, report = secret_engine.apply()
    assert report.ok and report.upgraded == 1
    after = _state(secret_engine)["resources"][DEPLOYMENT]["attributes"]["processes"]
    assert [p["name"] for p in after] == [p["name"] for p in processes]
    assert not any("env_hash" in p for p in after)
