"""Attribute models per kind: typed, frozen, extra facts kept, unknown values dropped first."""

from __future__ import annotations

import pydantic
import pytest

from cmlplan.providers.attributes import (
    ATTRIBUTES,
    AttributesError,
    DeploymentAttributes,
    check,
    parse,
    problem,
)
from cmlplan.values import UNKNOWN

DEPLOYMENT = {
    "model": "model.p/m", "project": "p", "name": "m", "build": 2, "replicas": 2, "deployment_id": 7,
    "processes": [{"name": "r.p.m.d7.abc123.0", "index": 0, "port": 9000, "pid": 12}],
}


def test_parse_gives_typed_frozen_attributes_and_keeps_provider_facts() -> None:
    typed = parse(DeploymentAttributes, "deployment.p/m", {**DEPLOYMENT, "extra_fact": "kept"})
    assert typed.build == 2 and typed.processes is not None and typed.processes[0].port == 9000
    assert typed.model_extra == {"extra_fact": "kept"}
    with pytest.raises(pydantic.ValidationError):
        typed.replicas = 3  # type: ignore[misc]


def test_unknown_values_are_dropped_before_validation() -> None:
    assert problem("deployment", {**DEPLOYMENT, "processes": UNKNOWN, "deployment_id": UNKNOWN}) is None
    assert parse(DeploymentAttributes, "d", {**DEPLOYMENT, "processes": UNKNOWN}).processes is None


@pytest.mark.parametrize(
    ("kind", "attributes", "expected"),
    [
        ("deployment", {**DEPLOYMENT, "processes": [1]}, "processes[0]:"),
        ("deployment", {**DEPLOYMENT, "replicas": "two"}, "replicas:"),
        ("build", {"model": "model.p/m", "number": "x", "hash": "h"}, "number:"),
        ("proxy", {"host": "h", "port": 0, "busy_timeout": 1, "request_timeout": 1, "max_request_bytes": 1}, "port:"),
        ("project", [], "must be an object"),
    ],
)
def test_the_first_bad_field_is_named(kind: str, attributes: object, expected: str) -> None:
    found = problem(kind, attributes)
    assert found is not None and found.startswith(expected)
    with pytest.raises(AttributesError, match=r"^addr: "):
        check("addr", kind, attributes)


def test_every_kind_declares_what_only_apply_knows() -> None:
    assert ATTRIBUTES["deployment"].computed == ("processes",)
    assert ATTRIBUTES["build"].computed == ("path",)
    assert set(ATTRIBUTES) == {"project", "apikey", "model", "build", "deployment", "proxy", "registry"}
    assert problem("some-future-kind", {"anything": 1}) is None
