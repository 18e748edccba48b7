"""The JSON Schema of `cmlplan plan --json` (format 1.x), kept in schemas/plan-v1.json."""

from __future__ import annotations

from typing import Any

from .action import Action, ActionReason

_ATTRIBUTES = {"type": ["object", "null"], "description": "attributes; key hashes masked as '(sensitive value)'"}


def plan_schema() -> dict[str, Any]:
    change = {
        "type": "object",
        "additionalProperties": False,
        "required": ["address", "kind", "action", "reason", "reason_text", "before", "after", "replace_paths", "dependencies", "notes"],
        "properties": {
            "address": {"type": "string", "description": "e.g. deployment.iris/petal-width"},
            "kind": {"enum": ["registry", "project", "apikey", "model", "build", "deployment", "proxy"]},
            "action": {"enum": [a.value for a in Action]},
            "reason": {"enum": [r.value for r in ActionReason]},
            "reason_text": {"type": "string"},
            "before": _ATTRIBUTES,
            "after": _ATTRIBUTES,
            "replace_paths": {"type": "array", "items": {"type": "string"}},
            "dependencies": {"type": "array", "items": {"type": "string"}},
            "notes": {"type": "array", "items": {"type": "string"}},
        },
    }
    drift = {
        "type": "object",
        "additionalProperties": False,
        "required": ["address", "kind", "before", "after"],
        "properties": {
            "address": {"type": "string"},
            "kind": {"type": "string"},
            "before": _ATTRIBUTES,
            "after": _ATTRIBUTES,
        },
    }
    count = {"type": "integer", "minimum": 0}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cmlplan.dev/schemas/plan-v1.json",
        "title": "cmlplan plan (JSON)",
        "type": "object",
        "additionalProperties": False,
        "required": [
            "format_version", "cmlplan_version", "created_at", "workspace_id", "state", "specs_hash", "options",
            "resource_changes", "resource_drift", "summary", "has_changes", "warnings",
        ],
        "properties": {
            "format_version": {"type": "string", "pattern": r"^1\.\d+$"},
            "cmlplan_version": {"type": "string"},
            "created_at": {"type": "string"},
            "workspace_id": {"type": "string"},
            "state": {
                "type": "object",
                "additionalProperties": False,
                "required": ["lineage", "serial"],
                "properties": {"lineage": {"type": ["string", "null"]}, "serial": {"type": ["integer", "null"]}},
            },
            "specs_hash": {"type": "string"},
            "options": {
                "type": "object",
                "additionalProperties": False,
                "required": ["destroy", "refresh", "targets", "replace"],
                "properties": {
                    "destroy": {"type": "boolean"},
                    "refresh": {"type": "boolean"},
                    "targets": {"type": "array", "items": {"type": "string"}},
                    "replace": {"type": "array", "items": {"type": "string"}},
                },
            },
            "resource_changes": {"type": "array", "items": change},
            "resource_drift": {"type": "array", "items": drift},
            "resource_moves": {  # since 1.1: addresses a Moved document renames in state
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["from", "to"],
                    "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                },
            },
            "state_upgrades": {  # since 1.2: addresses whose recorded fingerprints apply rewrites (state only)
                "type": "array",
                "items": {"type": "string"},
            },
            "summary": {
                "type": "object",
                "additionalProperties": False,
                "required": ["add", "change", "replace", "destroy"],
                "properties": {"add": count, "change": count, "replace": count, "destroy": count, "moved": count},
            },
            "has_changes": {"type": "boolean"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    }
