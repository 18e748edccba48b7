"""Saved plans: round trip, and one-line PlanFileErrors for files that are not (usable) plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmlplan.plan import (
    Action,
    ActionReason,
    Drift,
    Plan,
    PlanFileError,
    ResourceChange,
    load_plan,
    save_plan,
)
from cmlplan.plan.jsonformat import plan_to_dict


@pytest.fixture
def plan() -> Plan:
    return Plan(
        changes=(
            ResourceChange(
                "deployment.p/m", "deployment", Action.CREATE_THEN_DELETE, ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED,
                {"build": 1, "env": {"A": "1"}}, {"build": 2, "env": {"A": "1"}},
                replace_paths=("build",), dependencies=("model.p/m", "build.p/m#2"), notes=("n",),
            ),
            ResourceChange("project.p", "project", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None, {"description": ""}),
        ),
        drift=(Drift("deployment.p/m", "deployment", {"replicas": 1}, {"replicas": 2}),),
        workspace_id="ws",
        lineage="2c7e4ad9-3a3a-4ec0-9d4e-1b6d1d8e6b43",
        serial=4,
        specs_hash="abc",
        targets=("deployment.p/m",),
        replace=("model.p/m.access_key",),
        created_at="2026-11-25T10:00:00+00:00",
        cmlplan_version="0.1.0",
        warnings=("w",),
    )


def test_round_trip(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert loaded == plan
    assert plan_to_dict(loaded) == plan_to_dict(plan)
    assert not list(tmp_path.glob("*.tmp"))


def _error(path: Path) -> str:
    with pytest.raises(PlanFileError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "no such plan file" in _error(tmp_path / "nope.json")


@pytest.mark.parametrize("text", ["{not json", "", "[" * 100000])
def test_corrupt_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text)
    assert "not a saved plan (invalid JSON)" in _error(path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "cannot read the plan" in _error(path)


@pytest.mark.parametrize(
    "document",
    [[], {"kind": "something-else", "plan": {}}, {"format_version": 1}, {"kind": "cmlplan-saved-plan", "plan": []}],
)
def test_foreign_json(tmp_path: Path, document: object) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    assert "not a saved plan (write one with `cmlplan plan -out FILE`)" in _error(path)


def test_future_format(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    data = json.loads(path.read_text())
    data["plan"]["format_version"] = "2.0"
    path.write_text(json.dumps(data))
    assert "plan format '2.0' is not supported by this cmlplan (reads 1.x)" in _error(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("state"),
        lambda p: p["resource_changes"][0].update(action="explode"),
        lambda p: p["resource_changes"][0].update(reason=7),
        lambda p: p.update(resource_changes=None),
        lambda p: p.update(options="x"),
    ],
)
def test_damaged_plan(plan: Plan, tmp_path: Path, damage) -> None:
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    data = json.loads(path.read_text())
    damage(data["plan"])
    path.write_text(json.dumps(data))
    assert "damaged saved plan" in _error(path)


def test_unwritable_target(plan: Plan, tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="cannot write the plan"):
        save_plan(plan, tmp_path / "missing-dir" / "plan.json")
