"""The typed engine-provider contract as users meet it: wrongly typed state and undeclared kinds
each give one line naming where, no traceback, and nothing is overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_commands import cmlplan  # type: ignore[import-not-found]


@pytest.fixture
def applied(add_numbers: Path, fake) -> Path:  # type: ignore[no-untyped-def]
    assert cmlplan("apply", "-C", str(add_numbers), "-auto-approve").code == 0
    return add_numbers


@pytest.mark.parametrize(
    ("address", "field", "value", "expected"),
    [
        ("deployment.numbers/add", "processes", [1], "resources['deployment.numbers/add'].attributes.processes[0]"),
        ("build.numbers/add#1", "number", "x", "resources['build.numbers/add#1'].attributes.number"),
        ("proxy.default", "port", "eighty", "resources['proxy.default'].attributes.port"),
    ],
)
@pytest.mark.parametrize("command", [["plan"], ["apply", "-auto-approve"], ["destroy", "-auto-approve"]])
def test_wrongly_typed_state_attributes_are_one_line_and_nothing_is_overwritten(
    applied: Path, command: list[str], address: str, field: str, value: object, expected: str
) -> None:
    path = applied / ".cmlplan" / "state.json"
    data = json.loads(path.read_text())
    data["resources"][address]["attributes"][field] = value
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    outcome = cmlplan(command[0], "-C", str(applied), *command[1:])
    assert outcome.code == 1
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1, outcome.err
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in outcome.err
    assert path.read_bytes() == before


def test_a_kind_the_provider_does_not_declare_is_refused_at_plan_time(add_numbers: Path, fake) -> None:  # type: ignore[no-untyped-def]
    spec = add_numbers / "cmlplan.yaml"
    spec.write_text(spec.read_text() + "---\napiVersion: cmlplan/v1\nkind: ModelRegistry\nmetadata: {name: mlflow}\nspec: {}\n")
    outcome = cmlplan("plan", "-C", str(add_numbers))
    assert outcome.code == 1
    assert outcome.err.strip() == (
        "Error: registry.mlflow: ModelRegistry is not supported by provider 'fake' (it manages: build, deployment, proxy);"
        " run mlflow server elsewhere and give the registry its uri: instead"
    )
    assert fake.calls == []
