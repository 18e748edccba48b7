"""decide_action, the one function choosing each resource's action: a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from cmlplan.plan import Action, ActionReason, decide_action

A = {"replicas": 2, "cpu": 1.0, "build": 1, "env": {"A": "1"}}


def _with(**changes: Any) -> dict[str, Any]:
    return {**A, **changes}


CASES = [
    ("create new", dict(current=None, planned=A, in_state=False), Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, ()),
    ("create because gone", dict(current=None, planned=A, in_state=True), Action.CREATE, ActionReason.CREATE_BECAUSE_GONE, ()),
    ("delete because no spec", dict(current=A, planned=None, in_state=True), Action.DELETE, ActionReason.DELETE_BECAUSE_NO_SPEC, ()),
    ("delete on destroy", dict(current=A, planned=None, in_state=True, destroying=True), Action.DELETE, ActionReason.DELETE_BECAUSE_DESTROY, ()),
    ("gone and unwanted", dict(current=None, planned=None, in_state=False), Action.NOOP, ActionReason.NONE, ()),
    ("noop", dict(current=A, planned=dict(A), in_state=True), Action.NOOP, ActionReason.NONE, ()),
    ("update", dict(current=A, planned=_with(replicas=3), in_state=True), Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED, ()),
    ("update because drift", dict(current=_with(replicas=5), planned=A, in_state=True, drifted=True), Action.UPDATE, ActionReason.UPDATE_BECAUSE_DRIFT, ()),
    ("replace by request", dict(current=A, planned=dict(A), in_state=True, replace_requested=True), Action.REPLACE, ActionReason.REPLACE_BY_REQUEST, ()),
    (
        "replace by request, create before destroy",
        dict(current=A, planned=dict(A), in_state=True, replace_requested=True, create_before_destroy=True),
        Action.CREATE_THEN_DELETE, ActionReason.REPLACE_BY_REQUEST, (),
    ),
    (
        "cannot update in place",
        dict(current=A, planned=_with(cpu=2.0), in_state=True, requires_replace=("cpu",)),
        Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE, ("cpu",),
    ),
    (
        "create_then_delete when create_before_destroy",
        dict(current=A, planned=_with(cpu=2.0), in_state=True, requires_replace=("cpu",), create_before_destroy=True),
        Action.CREATE_THEN_DELETE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE, ("cpu",),
    ),
    (
        "build forces: source changed",
        dict(current=A, planned=_with(build=2), in_state=True, requires_replace=("build", "cpu")),
        Action.REPLACE, ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED, ("build",),
    ),
    (
        "hash forces: source changed",
        dict(current={"hash": "a"}, planned={"hash": "b"}, in_state=True, requires_replace=("hash",)),
        Action.REPLACE, ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED, ("hash",),
    ),
    (
        "a non-forcing change beside nothing forcing is an update",
        dict(current=A, planned=_with(replicas=4), in_state=True, requires_replace=("build", "cpu")),
        Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED, (),
    ),
    (
        "ignore_changes hides a change",
        dict(current=A, planned=_with(replicas=7), in_state=True, ignore_changes=("replicas",)),
        Action.NOOP, ActionReason.NONE, (),
    ),
    (
        "ignore_changes hides a nested change",
        dict(current=A, planned=_with(env={"A": "2"}), in_state=True, ignore_changes=("env.A",)),
        Action.NOOP, ActionReason.NONE, (),
    ),
    (
        "ignore_changes leaves other changes",
        dict(current=A, planned=_with(replicas=7, cpu=3.0), in_state=True, ignore_changes=("replicas",)),
        Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED, (),
    ),
    (
        "nested path in requires_replace",
        dict(current=A, planned=_with(env={"A": "2"}), in_state=True, requires_replace=("env",)),
        Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE, ("env.A",),
    ),
    (
        "nested key added under requires_replace",
        dict(current=A, planned=_with(env={"A": "1", "B": "x"}), in_state=True, requires_replace=("env",)),
        Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE, ("env.B",),
    ),
    (
        "a requires_replace prefix is not a string prefix",
        dict(current={"envelope": 1}, planned={"envelope": 2}, in_state=True, requires_replace=("env",)),
        Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED, (),
    ),
]


@pytest.mark.parametrize(
    ("arguments", "action", "reason", "replace_paths"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide_action(arguments: dict[str, Any], action: Action, reason: ActionReason, replace_paths: tuple[str, ...]) -> None:
    decision = decide_action(**arguments)
    assert (decision.action, decision.reason, decision.replace_paths) == (action, reason, replace_paths)


def test_inputs_are_not_mutated_by_ignore_changes() -> None:
    current = _with(env={"A": "1"})
    planned = _with(env={"A": "2"})
    decide_action(current=current, planned=planned, in_state=True, ignore_changes=("env.A", "replicas"))
    assert current["env"] == {"A": "1"} and planned["env"] == {"A": "2"} and "replicas" in planned


def test_every_action_symbol() -> None:
    assert [a.symbol for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.CREATE_THEN_DELETE, Action.DELETE)] == [
        "+", "~", "-/+", "+/-", "-",
    ]
    assert not Action.NOOP.changes and Action.UPDATE.changes
