"""An ApiKey without an expiry: the Workspace's default, capped by its maximum; never replaced for it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from cmlplan.plan import Action
from cmlplan.plan.diff import attribute_changes
from cmlplan.specs import SpecError

KEY = "apikey.ci"
DAY = 86400


def add_key(engine, spec: str = "{user: alice}") -> None:  # type: ignore[no-untyped-def]
    path = engine.directory / "cmlplan.yaml"
    path.write_text(
        path.read_text() + f"---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {{name: ci}}\nspec: {spec}\n"
    )


def set_limits(engine, limits: str) -> None:  # type: ignore[no-untyped-def]
    path = engine.directory / "cmlplan.yaml"
    text = path.read_text()
    old = "  users: [{name: alice}]\n"
    assert old in text
    path.write_text(text.replace(old, old + f"  limits: {limits}\n", 1))


def recorded(engine) -> dict:  # type: ignore[no-untyped-def,type-arg]
    state = json.loads((engine.directory / ".cmlplan" / "state.json").read_text())
    return state["resources"][KEY]["attributes"]


def lifetime_days(attributes: dict) -> float:  # type: ignore[type-arg]
    created = datetime.fromisoformat(attributes["created_at"])
    return (datetime.fromisoformat(attributes["expires"]) - created) / timedelta(days=1)


def test_a_key_without_expiry_gets_one_year_by_default(engine) -> None:  # type: ignore[no-untyped-def]
    add_key(engine)
    _, report = engine.apply()
    assert report.ok
    assert lifetime_days(recorded(engine)) == 365


def test_the_default_expiry_is_the_workspace_default(engine) -> None:  # type: ignore[no-untyped-def]
    set_limits(engine, "{api_key_default_expiry: 30d}")
    add_key(engine)
    assert engine.apply()[1].ok
    assert lifetime_days(recorded(engine)) == 30


def test_the_default_is_capped_by_the_maximum(engine) -> None:  # type: ignore[no-untyped-def]
    set_limits(engine, "{api_key_max_expiry: 90d}")  # the default (one year) is longer
    add_key(engine)
    assert engine.apply()[1].ok
    assert lifetime_days(recorded(engine)) == 90


def test_an_explicit_expiry_wins_over_the_default(engine) -> None:  # type: ignore[no-untyped-def]
    set_limits(engine, "{api_key_default_expiry: 30d}")
    add_key(engine, "{user: alice, expires_in: 7d}")
    assert engine.apply()[1].ok
    assert lifetime_days(recorded(engine)) == 7


def test_changing_the_default_moves_expires_in_place_and_keeps_the_key(engine) -> None:  # type: ignore[no-untyped-def]
    add_key(engine)
    assert engine.apply()[1].ok
    before = recorded(engine)
    set_limits(engine, "{api_key_max_expiry: 60d}")
    run = engine.plan()
    change = run.plan.change_for(KEY)
    assert change.action is Action.UPDATE
    assert [c.path for c in attribute_changes(change.before, change.after)] == [("expires",)]
    assert engine.apply()[1].ok
    after = recorded(engine)
    assert after["key_hash"] == before["key_hash"] and after["created_at"] == before["created_at"]
    assert lifetime_days(after) == 60
    assert not engine.plan().plan.has_changes


def test_an_unchanged_default_leaves_an_existing_key_alone(engine) -> None:  # type: ignore[no-untyped-def]
    add_key(engine)
    assert engine.apply()[1].ok
    set_limits(engine, "{api_key_default_expiry: 365d}")
    assert not engine.plan().plan.has_changes


def test_an_expiry_longer_than_the_maximum_is_a_spec_error_naming_the_line(engine) -> None:  # type: ignore[no-untyped-def]
    set_limits(engine, "{api_key_max_expiry: 90d}")
    add_key(engine, "{user: alice, expires_in: 120d}")
    with pytest.raises(SpecError) as caught:
        engine.plan()
    [problem] = caught.value.problems
    assert "cmlplan.yaml:" in problem and "apikey.ci: spec.expires_in is longer than the Workspace allows (120d > 90d)" in problem
