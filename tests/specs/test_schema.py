"""The checked-in JSON Schemas match the code, accept the examples and reject broken documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from cmlplan.plan import plan_to_dict
from cmlplan.plan.schema import plan_schema
from cmlplan.specs.schema import spec_schema

REPO = Path(__file__).resolve().parents[2]
SPEC_SCHEMA = REPO / "schemas" / "spec-v1.json"
PLAN_SCHEMA = REPO / "schemas" / "plan-v1.json"


def _documents() -> list[tuple[str, Any]]:
    found = []
    for path in sorted((REPO / "examples").glob("*/*.yaml")):
        if path.parent.name == "ci":
            continue  # CI workflows and hooks, not specs (tests/examples/test_ci_examples.py)
        for index, document in enumerate(YAML(typ="safe").load_all(path.read_text())):
            if document is not None:
                found.append((f"{path.parent.name}/{path.name}#{index}", document))
    return found


DOCUMENTS = _documents()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SPEC_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_spec_schema_file_is_up_to_date() -> None:
    assert json.loads(SPEC_SCHEMA.read_text()) == spec_schema(), "regenerate: cmlplan schema > schemas/spec-v1.json"


def test_plan_schema_file_is_up_to_date() -> None:
    assert json.loads(PLAN_SCHEMA.read_text()) == plan_schema(), "regenerate: cmlplan schema -plan > schemas/plan-v1.json"


def test_examples_have_every_kind_they_use() -> None:
    assert {d["kind"] for _, d in DOCUMENTS} >= {"Workspace", "Proxy", "Project", "ApiKey", "Model"}


@pytest.mark.parametrize(("name", "document"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_examples_are_valid(validator: jsonschema.Draft202012Validator, name: str, document: Any) -> None:
    assert list(validator.iter_errors(document)) == []


def _model() -> dict[str, Any]:
    return copy.deepcopy(next(d for _, d in DOCUMENTS if d["kind"] == "Model"))


def _broken() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    typo = _model()
    typo["spec"]["deployment"]["repilcas"] = 2
    cases.append(("unknown field in spec", typo))
    envelope = _model()
    envelope["lifecylce"] = {}
    cases.append(("unknown top-level field", envelope))
    wrong_type = _model()
    wrong_type["spec"]["deployment"]["replicas"] = "two"
    cases.append(("wrong type", wrong_type))
    kind = _model()
    kind["kind"] = "Modle"
    cases.append(("bad kind", kind))
    version = _model()
    version["apiVersion"] = "cmlplan/v2"
    cases.append(("bad apiVersion", version))
    size = _model()
    size["spec"]["deployment"]["memory"] = "5 parsecs"
    cases.append(("bad size", size))
    name = _model()
    name["metadata"]["name"] = "Not_DNS"
    cases.append(("bad name", name))
    return cases


@pytest.mark.parametrize(("name", "document"), _broken(), ids=[n for n, _ in _broken()])
def test_broken_documents_are_rejected(validator: jsonschema.Draft202012Validator, name: str, document: Any) -> None:
    assert list(validator.iter_errors(document)) != []


def test_plan_json_validates(engine) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(PLAN_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    first = engine.plan().plan
    jsonschema.validate(plan_to_dict(first), schema, cls=jsonschema.Draft202012Validator)
    engine.apply()
    source = engine.directory / "add.py"
    source.write_text(source.read_text() + "\n# changed\n")
    second = engine.plan().plan
    assert second.has_changes
    jsonschema.validate(plan_to_dict(second), schema, cls=jsonschema.Draft202012Validator)
    broken = plan_to_dict(second)
    broken["resource_changes"][0]["action"] = "explode"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
