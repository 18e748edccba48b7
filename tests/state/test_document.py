"""Tests for the state document model and its JSON form."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmlplan import __version__
from cmlplan.errors import CmlplanError
from cmlplan.state.document import FORMAT_VERSION, BuildRecord, ResourceState, StateDocument, StateError

SOURCE = ".cmlplan/state.json"
WHEN = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def _doc() -> StateDocument:
    doc = StateDocument.new("ws-1")
    doc.set_resource(
        "model.iris/petal-width",
        ResourceState(
            kind="model",
            provider="local",
            attributes={"replicas": 2, "tags": ["a", "b"], "nested": {"x": None, "y": 1.5}},
            dependencies=["project.iris"],
            created_at=WHEN,
            updated_at=WHEN,
        ),
    )
    doc.set_resource(
        "project.iris", ResourceState(kind="project", provider="local", created_at=WHEN, updated_at=WHEN)
    )
    doc.add_build("model.iris/petal-width", BuildRecord(number=1, hash="abc123", created_at=WHEN))
    return doc


def _error(text: str | bytes) -> str:
    with pytest.raises(StateError) as info:
        StateDocument.from_json(text, SOURCE)
    message = str(info.value)
    assert "\n" not in message
    assert SOURCE in message
    return message


def test_new_document_has_fresh_lineage_salt_and_serial_zero() -> None:
    first, second = StateDocument.new("ws-1"), StateDocument.new("ws-1")
    assert first.format_version == FORMAT_VERSION == 1
    assert first.serial == 0
    assert first.workspace_id == "ws-1"
    assert first.cmlplan_version == __version__
    assert uuid.UUID(first.lineage).version == 4
    assert re.fullmatch(r"[0-9a-f]{32}", first.salt)
    assert first.lineage != second.lineage and first.salt != second.salt
    assert first.resources == {} and first.builds == {} and first.counters == {}


def test_next_id_counts_per_counter_and_never_reuses() -> None:
    doc = StateDocument.new("ws")
    assert [doc.next_id("deployment"), doc.next_id("deployment"), doc.next_id("build")] == [1, 2, 1]
    assert doc.counters == {"deployment": 3, "build": 2}


def test_resource_and_build_helpers() -> None:
    doc = _doc()
    assert doc.resources["project.iris"].kind == "project"
    removed = doc.remove_resource("project.iris")
    assert removed is not None and removed.kind == "project"
    assert doc.remove_resource("project.iris") is None
    doc.add_build("model.iris/petal-width", BuildRecord(number=2, hash="def"))
    assert [b.number for b in doc.builds["model.iris/petal-width"]] == [1, 2]


def test_json_roundtrip() -> None:
    doc = _doc()
    doc.next_id("deployment")
    text = doc.to_json()
    assert StateDocument.from_json(text, SOURCE) == doc
    assert StateDocument.from_json(text.encode(), SOURCE) == doc
    assert StateDocument.from_json(text, SOURCE).to_json() == text


def test_to_json_is_deterministic_sorted_and_indented() -> None:
    doc = _doc()
    reordered = doc.model_copy(deep=True)
    reordered.resources = dict(reversed(list(doc.resources.items())))
    assert reordered.to_json() == doc.to_json()
    text = doc.to_json()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert '"created_at": "2026-11-25T18:00:00Z"' in text


def test_non_ascii_and_lone_surrogates_survive_a_roundtrip() -> None:
    data = json.loads(_doc().to_json())
    data["workspace_id"] = "équipe-\ud800"
    doc = StateDocument.from_json(json.dumps(data), SOURCE)
    assert StateDocument.from_json(doc.to_json().encode("ascii"), SOURCE) == doc


def test_invalid_json_names_line_and_column() -> None:
    message = _error('{\n  "serial": 1,\n  oops\n}')
    assert re.search(r"is not valid JSON \(line 3, column 3: ", message)


def test_not_utf8_and_not_an_object() -> None:
    assert "not UTF-8" in _error(b"\xff\xfe{")
    assert _error("[1, 2]").endswith("must hold a JSON object, found an array")
    assert _error("null").endswith("found null")


def test_json_oddities_are_refused() -> None:
    assert "NaN" in _error('{"serial": NaN}')
    assert "too many digits" in _error('{"serial": ' + "9" * 5000 + "}")
    assert "nested too deeply" in _error("[" * 100_000)


def test_future_format_is_refused_with_a_clear_message() -> None:
    data = json.loads(_doc().to_json()) | {"format_version": 2, "something_new": True}
    assert _error(json.dumps(data)) == (
        f"state file {SOURCE} was written by a newer cmlplan (format 2); this cmlplan reads format 1"
    )


def test_schema_errors_name_the_field_path() -> None:
    data = json.loads(_doc().to_json())
    data["resources"]["model.iris/petal-width"]["kind"] = 42
    assert "resources['model.iris/petal-width'].kind: Input should be a valid string" in _error(
        json.dumps(data)
    )

    data = json.loads(_doc().to_json())
    data["builds"]["model.iris/petal-width"][0]["number"] = 0
    assert "builds['model.iris/petal-width'][0].number: Input should be greater than or equal to 1" in _error(
        json.dumps(data)
    )

    data = json.loads(_doc().to_json())
    del data["lineage"], data["salt"]
    assert re.search(r"is invalid: lineage: Field required \(and 1 more problem\)$", _error(json.dumps(data)))


def test_unknown_fields_bad_lineage_and_bad_salt_are_refused() -> None:
    base = json.loads(_doc().to_json())
    assert "plaintext_key: Extra inputs are not permitted" in _error(
        json.dumps(base | {"plaintext_key": "mak_x"})
    )
    assert "lineage: Value error, must be a UUID" in _error(json.dumps(base | {"lineage": "nope"}))
    assert "salt: String should match pattern" in _error(json.dumps(base | {"salt": "XYZ"}))
    assert "format_version" in _error(json.dumps(base | {"format_version": 0}))
    assert "format_version" in _error(json.dumps(base | {"format_version": "1"}))


def test_state_error_is_a_cmlplan_error() -> None:
    assert issubclass(StateError, CmlplanError)


def _check_parse(raw: str | bytes) -> None:
    """The property: a StateError or a document that survives a roundtrip, never anything else."""
    try:
        doc = StateDocument.from_json(raw, SOURCE)
    except StateError as exc:
        assert "\n" not in str(exc)
        return
    again = StateDocument.from_json(doc.to_json().encode("ascii"), SOURCE)
    assert again == doc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_state_error(raw: bytes) -> None:
    _check_parse(raw)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_documents_parse_or_raise_state_error(data: st.DataObject) -> None:
    """Random damage to a real document reaches the schema checks, not just the JSON parser."""
    document = json.loads(_doc().to_json())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(document)))
        replacement = data.draw(_json_values)
        if not path:
            document = replacement
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    _check_parse(json.dumps(document))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json_values, max_size=6))
def test_arbitrary_json_objects_parse_or_raise_state_error(value: dict[str, Any]) -> None:
    _check_parse(json.dumps(value))
