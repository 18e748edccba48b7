"""docs/specs.md is generated from the spec models and must stay in step with them."""

from __future__ import annotations

from pathlib import Path

from cmlplan.specs.document import SPEC_BY_KIND
from cmlplan.specs.reference import render_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "specs.md"


def test_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render_reference(), "regenerate: cmlplan schema -reference > docs/specs.md"


def test_reference_names_every_kind_and_a_nested_field() -> None:
    text = render_reference()
    for kind in SPEC_BY_KIND:
        assert kind in text
    assert "`deployment.replicas`" in text and "`limits.max_replicas`" in text
