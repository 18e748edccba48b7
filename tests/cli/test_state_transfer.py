"""`cmlplan state migrate|pull|push` through main(): lineage and serial kept, Terraform's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_commands import cmlplan

from cmlplan.state.document import StateDocument

STATE = "state: {backend: postgres, dsn: \"${env:CMLPLAN_STATE_DSN}\", workspace: prod}"


@pytest.fixture
def ws(add_numbers: Path, fake, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CMLPLAN_STATE_DSN", postgres_dsn)
    return add_numbers


def _use_postgres(ws: Path) -> None:
    spec = ws / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("provider: local", f"provider: local\n  {STATE}", 1))


def test_migrate_to_postgres_keeps_lineage_and_serial_then_plans_no_changes(ws: Path) -> None:
    assert cmlplan("apply", "-C", str(ws), "-auto-approve").code == 0
    local = StateDocument.from_json((ws / ".cmlplan" / "state.json").read_bytes(), "x")
    moved = cmlplan("state", "migrate", "--to", "postgres", "--workspace", "prod", "-C", str(ws), "--json")
    assert moved.code == 0, moved
    data = json.loads(moved.out)
    assert (data["lineage"], data["serial"]) == (local.lineage, local.serial)
    assert data["spec"] == STATE and ":***@" in data["to"] and "cmlplan-test-password" not in moved.out
    again = cmlplan("state", "migrate", "--to", "postgres", "--workspace", "prod", "-C", str(ws))
    assert again.code == 0, again  # migrating the same state twice is harmless
    _use_postgres(ws)
    pulled = cmlplan("state", "pull", "-C", str(ws))
    assert pulled.code == 0, pulled
    assert StateDocument.from_json(pulled.out, "pull") == local
    plan = cmlplan("plan", "-C", str(ws), "-detailed-exitcode")
    assert plan.code == 0 and "No changes." in plan.out, plan


def test_push_refuses_an_older_serial_and_another_lineage(ws: Path, tmp_path: Path) -> None:
    _use_postgres(ws)
    assert cmlplan("apply", "-C", str(ws), "-auto-approve").code == 0
    current = StateDocument.from_json(cmlplan("state", "pull", "-C", str(ws)).out, "pull")
    older = current.model_copy(update={"serial": current.serial - 1})
    (tmp_path / "older.json").write_text(older.to_json())
    refused = cmlplan("state", "push", str(tmp_path / "older.json"), "-C", str(ws))
    assert refused.code == 1 and f"is older than the stored state (serial {current.serial - 1} < {current.serial})" in refused.err
    stranger = StateDocument.new("add-numbers-demo")
    (tmp_path / "stranger.json").write_text(stranger.to_json())
    refused = cmlplan("state", "push", str(tmp_path / "stranger.json"), "-C", str(ws), "-force")
    assert refused.code == 1 and "belongs to another state" in refused.err, refused
    same = current.model_copy(deep=True)
    same.remove_resource("proxy.default")
    (tmp_path / "same.json").write_text(same.to_json())
    refused = cmlplan("state", "push", str(tmp_path / "same.json"), "-C", str(ws))
    assert refused.code == 1 and "has the same serial" in refused.err
    pushed = cmlplan("state", "push", str(tmp_path / "same.json"), "-C", str(ws), "--json")
    assert pushed.code == 1
    forced = cmlplan("state", "push", str(tmp_path / "same.json"), "-C", str(ws), "-force", "--json")
    assert forced.code == 0 and json.loads(forced.out)["serial"] == current.serial + 1, forced
    after = StateDocument.from_json(cmlplan("state", "pull", "-C", str(ws)).out, "pull")
    assert "proxy.default" not in after.resources and after.lineage == current.lineage


def test_push_a_damaged_file_is_one_line(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    result = cmlplan("state", "push", str(tmp_path / "bad.json"), "-C", str(ws))
    assert result.code == 1 and len(result.err.splitlines()) == 1 and "is not valid JSON" in result.err


def test_migrate_back_to_a_file(ws: Path) -> None:
    _use_postgres(ws)
    assert cmlplan("apply", "-C", str(ws), "-auto-approve").code == 0
    moved = cmlplan("state", "migrate", "--to", "file", "--path", "other/state.json", "-C", str(ws), "--json")
    assert moved.code == 0, moved
    stored = StateDocument.from_json((ws / "other" / "state.json").read_bytes(), "x")
    assert stored.serial == json.loads(moved.out)["serial"]


def test_postgres_state_without_its_variable_is_one_line(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_postgres(ws)
    monkeypatch.delenv("CMLPLAN_STATE_DSN")
    result = cmlplan("plan", "-C", str(ws))
    assert result.code == 1 and "environment variable CMLPLAN_STATE_DSN is not set" in result.err, result
