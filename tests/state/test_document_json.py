"""StateDocument.to_json: orjson's bytes are the standard library's bytes, or the standard library writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmlplan.state.document import StateDocument, _dumps

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plan"


def _stdlib(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*/state.json")), ids=lambda p: p.parent.name)
def test_golden_states_are_byte_identical(path: Path) -> None:
    document = StateDocument.from_json(path.read_text(), str(path))
    data = document.model_dump(mode="json")
    assert _dumps(data) == _stdlib(data)
    assert document.to_json() == _stdlib(data) + "\n"


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1.5, None, True, {}, [], 0.1, -0.0], "a": {"z": 1, "y": "x"}},
        {"big": 1e16, "small": 1e-7},  # Python writes 1e+16 and 1e-07
        {"text": "é ✓"},  # escaped as \\u00e9
        {"huge": 2**70},  # over 64 bits
        {"surrogate": "\ud800"},
    ],
)
def test_where_orjson_differs_the_standard_library_writes(value: dict[str, Any]) -> None:
    assert _dumps(value) == _stdlib(value)


def test_non_finite_floats_are_still_refused() -> None:
    with pytest.raises(ValueError):
        _dumps({"x": float("nan")})
