"""check_saved_plan: a saved plan applies only to the state, specs and world it was made against."""

from __future__ import annotations

import dataclasses

import pytest

from cmlplan.engine.workspace import StalePlanError, check_saved_plan
from cmlplan.providers.fake import FakeProvider

DEPLOYMENT = "deployment.numbers/add"


def _check(engine, saved) -> None:  # type: ignore[no-untyped-def]
    workspace = engine.workspace()
    fresh = engine.plan(
        destroy=saved.destroy, refresh=saved.refresh, targets=saved.targets, replace=saved.replace
    ).plan
    check_saved_plan(saved, fresh, workspace.read_state(), workspace.specs_hash())


def test_a_fresh_plan_is_accepted(engine) -> None:  # type: ignore[no-untyped-def]
    _check(engine, engine.plan().plan)  # no state yet
    engine.apply()
    (engine.directory / "cmlplan.yaml").write_text((engine.directory / "cmlplan.yaml").read_text().replace("replicas: 2", "replicas: 3"))
    _check(engine, engine.plan().plan)


def test_plan_made_without_state_when_state_exists_now(engine) -> None:  # type: ignore[no-untyped-def]
    saved = engine.plan().plan
    engine.apply()
    with pytest.raises(StalePlanError, match="made when there was no state, but state exists now"):
        _check(engine, saved)


def test_other_lineage(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    saved = dataclasses.replace(engine.plan().plan, lineage="00000000-0000-4000-8000-000000000000")
    with pytest.raises(StalePlanError, match="another state \\(lineage 00000000-"):
        _check(engine, saved)


def test_older_serial(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    path = engine.directory / "cmlplan.yaml"
    path.write_text(path.read_text().replace("replicas: 2", "replicas: 3"))
    saved = engine.plan().plan
    engine.apply()
    with pytest.raises(StalePlanError, match="state serial was 6 when it was made and is 7 now"):
        _check(engine, saved)


def test_changed_specs(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    saved = engine.plan().plan
    path = engine.directory / "cmlplan.yaml"
    path.write_text(path.read_text() + "\n# only a comment\n")
    with pytest.raises(StalePlanError, match="the specs changed since the plan was saved"):
        _check(engine, saved)


def test_world_moved(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    saved = engine.plan().plan
    assert not saved.has_changes
    fake.world[DEPLOYMENT]["replicas"] = 9
    with pytest.raises(StalePlanError, match=r"live world changed since the plan was saved \(deployment.numbers/add: planned nothing, now update\)"):
        _check(engine, saved)


def test_same_actions_but_different_values(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    fake.world[DEPLOYMENT]["replicas"] = 9
    saved = engine.plan().plan
    fake.world[DEPLOYMENT]["replicas"] = 8
    fake.world[DEPLOYMENT]["cpu"] = 1.0
    saved_after = dict(saved.change_for(DEPLOYMENT).after)
    saved_change = dataclasses.replace(saved.change_for(DEPLOYMENT), after={**saved_after, "replicas": 7})
    tampered = dataclasses.replace(saved, changes=tuple(saved_change if c.address == DEPLOYMENT else c for c in saved.changes))
    with pytest.raises(StalePlanError, match="deployment.numbers/add would now change differently"):
        _check(engine, tampered)
