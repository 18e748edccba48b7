"""Moved documents: a renamed or re-homed model keeps its deployment, builds and key (FakeProvider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmlplan.engine.moves import MoveError
from cmlplan.plan import render_markdown, render_text
from cmlplan.plan.jsonformat import plan_from_dict, plan_to_dict
from cmlplan.providers.fake import FakeProvider
from cmlplan.specs import SpecError

SPEC = "cmlplan.yaml"
MOVED = """---
apiVersion: cmlplan/v1
kind: Moved
metadata: {{name: {name}}}
spec: {{from: {source}, to: {target}}}
"""
PROJECT = """---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: maths}
spec: {description: More maths, collaborators: {alice: owner}}
"""


def _edit(folder: Path, old: str, new: str) -> None:
    path = folder / SPEC
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _append(folder: Path, text: str) -> None:
    path = folder / SPEC
    path.write_text(path.read_text() + text)


@pytest.fixture
def applied(engine, fake: FakeProvider):  # type: ignore[no-untyped-def]
    """add-numbers with authentication on (so the model has a key), applied once."""
    _edit(engine.directory, "authentication: false", "authentication: true")
    _, report = engine.apply()
    assert report.ok
    return engine


def _move_to_other_project(engine) -> None:  # type: ignore[no-untyped-def]
    _append(engine.directory, PROJECT)
    _edit(engine.directory, "metadata: {name: add, project: numbers}", "metadata: {name: plus, project: maths}")
    _append(engine.directory, MOVED.format(name="add-to-maths", source="model.numbers/add", target="model.maths/plus"))


def test_a_move_renames_state_and_the_provider_sees_no_delete_or_create(applied, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine = applied
    before = engine.workspace().read_state()
    deployment = dict(before.resources["deployment.numbers/add"].attributes)
    key_hash = before.resources["model.numbers/add"].attributes["access_key_hash"]
    keys = engine.workspace().keys
    key = keys.read("model.numbers/add")
    assert key
    _move_to_other_project(engine)

    run = engine.plan()
    assert dict(run.plan.moved) == {
        "model.numbers/add": "model.maths/plus",
        "build.numbers/add#1": "build.maths/plus#1",
        "deployment.numbers/add": "deployment.maths/plus",
    }
    acted = {c.address: c.action.value for c in run.plan.changes if c.action.changes}
    # the new project is created and the proxy learns its collaborators; the model itself only moves
    assert acted == {"project.maths": "create", "proxy.default": "update"}, acted
    assert run.plan.summary.moved == 1 and run.plan.has_changes
    text = render_text(run.plan)
    assert "# model.numbers/add has moved to model.maths/plus" in text
    assert "# deployment.numbers/add has moved to deployment.maths/plus" in text
    assert "1 moved." in text
    assert "`deployment.numbers/add` → `deployment.maths/plus`" in render_markdown(run.plan)
    data = plan_to_dict(run.plan)
    assert {"from": "model.numbers/add", "to": "model.maths/plus"} in data["resource_moves"]
    assert data["summary"]["moved"] == 1
    assert plan_from_dict(data).moved == run.plan.moved
    # planning does not write: the stored state still has the old addresses
    assert "model.numbers/add" in engine.workspace().read_state().resources

    fake.calls.clear()
    _, report = engine.apply()
    assert report.ok
    assert not [call for call in fake.calls if "add" in call[0] or "plus" in call[0]], fake.calls
    after = engine.workspace().read_state()
    assert not [a for a in after.resources if "numbers/add" in a]
    moved = after.resources["deployment.maths/plus"].attributes
    assert moved["deployment_id"] == deployment["deployment_id"]
    assert moved["processes"] == deployment["processes"]
    assert moved["model"] == "model.maths/plus" and moved["project"] == "maths" and moved["name"] == "plus"
    assert after.resources["model.maths/plus"].attributes["access_key_hash"] == key_hash
    assert after.resources["model.maths/plus"].dependencies == ["project.maths"]
    assert [b.number for b in after.builds["model.maths/plus"]] == [1]
    assert "model.numbers/add" not in after.builds
    assert keys.read("model.maths/plus") == key and keys.read("model.numbers/add") is None
    assert after.history["deployment.maths/plus"]  # the past comes along

    again = engine.plan()
    assert not again.plan.has_changes and again.plan.moved == () and again.plan.drift == ()


def test_renaming_within_the_project_keeps_the_deployment(applied, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine = applied
    _edit(engine.directory, "metadata: {name: add, project: numbers}", "metadata: {name: sum, project: numbers}")
    _append(engine.directory, MOVED.format(name="rename", source="model.numbers/add", target="model.numbers/sum"))
    fake.calls.clear()
    run, report = engine.apply()
    assert report.ok and run.plan.summary.total == 0 and run.plan.summary.moved == 1
    assert fake.calls == []
    assert "deployment.numbers/sum" in engine.workspace().read_state().resources


def test_a_target_that_already_exists_in_state_is_one_line(applied) -> None:  # type: ignore[no-untyped-def]
    engine = applied
    # a second model is applied, then the first is "moved" onto it
    text = (engine.directory / SPEC).read_text()
    model = text[text.index("kind: Model") - len("apiVersion: cmlplan/v1\n") :]
    _append(engine.directory, "---\n" + model.replace("{name: add,", "{name: other,"))
    assert engine.apply()[1].ok
    _edit(engine.directory, "metadata: {name: add, project: numbers}", "metadata: {name: third, project: numbers}")
    _append(engine.directory, MOVED.format(name="clash", source="model.numbers/add", target="model.numbers/other"))
    with pytest.raises(MoveError) as caught:
        engine.plan()
    assert str(caught.value) == (
        "cannot move model.numbers/add to model.numbers/other: model.numbers/other already exists in state"
    )


def test_a_cycle_is_one_line(engine) -> None:  # type: ignore[no-untyped-def]
    _append(engine.directory, MOVED.format(name="one", source="model.numbers/x", target="model.numbers/y"))
    _append(engine.directory, MOVED.format(name="two", source="model.numbers/y", target="model.numbers/x"))
    with pytest.raises(SpecError) as caught:
        engine.workspace()
    problems = caught.value.problems
    assert len(problems) == 1 and "moves form a cycle: model.numbers/x -> model.numbers/y -> model.numbers/x" in problems[0]
    assert "cmlplan.yaml:37:" in problems[0]  # names the document


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("model.numbers/add", "model.numbers/add", "from and to are the same address"),
        ("model.numbers/add", "model.numbers/new", "is still defined"),
        ("model.numbers/old", "model.numbers/nowhere", "spec.to: model.numbers/nowhere is not a Model in the specs"),
        ("deployment.numbers/add", "model.numbers/add", "is not a model address"),
    ],
)
def test_bad_moves_are_named(engine, source: str, target: str, message: str) -> None:  # type: ignore[no-untyped-def]
    _append(engine.directory, MOVED.format(name="bad", source=source, target=target))
    with pytest.raises(SpecError) as caught:
        engine.workspace()
    assert any(message in problem and "bad" in problem for problem in caught.value.problems), caught.value.problems
