"""The JSON Schema of the spec format, for editors and for checking specs outside cmlplan."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .common import API_VERSION, Lifecycle, Metadata
from .document import SPEC_BY_KIND

SCHEMA_ID = "https://cmlplan.dev/schemas/spec-v1.json"


def spec_schema() -> dict[str, Any]:
    """One schema for one YAML document: the envelope, then the spec chosen by ``kind``."""
    models = [Metadata, Lifecycle, *SPEC_BY_KIND.values()]
    refs, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/$defs/{model}"
    )
    defs = top.get("$defs", {})

    def ref(model: Any) -> dict[str, Any]:
        return refs[(model, "validation")]

    branches = []
    for kind, model in SPEC_BY_KIND.items():
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"properties": {"spec": ref(model)}},
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cmlplan spec document",
        "description": "One YAML document of a cmlplan configuration (apiVersion cmlplan/v1).",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": list(SPEC_BY_KIND)},
            "metadata": ref(Metadata),
            "spec": {"type": "object"},
            "lifecycle": ref(Lifecycle),
        },
        "allOf": branches,
        "$defs": defs,
    }
