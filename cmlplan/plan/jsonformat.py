"""The plan's JSON form: documented, versioned (schemas/plan-v1.json), secrets masked.

``format_version`` follows semver: a new field is a minor bump, a removed or changed one a major.
"""

from __future__ import annotations

import json
from typing import Any

from ..values import mask
from .action import Action, ActionReason
from .change import Drift, ResourceChange
from .plan import Plan

FORMAT_VERSION = "1.2"  # 1.1: resource_moves, summary.moved; 1.2: state_upgrades


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    summary = plan.summary
    return {
        "format_version": FORMAT_VERSION,
        "cmlplan_version": plan.cmlplan_version,
        "created_at": plan.created_at,
        "workspace_id": plan.workspace_id,
        "state": {"lineage": plan.lineage, "serial": plan.serial},
        "specs_hash": plan.specs_hash,
        "options": {
            "destroy": plan.destroy,
            "refresh": plan.refresh,
            "targets": list(plan.targets),
            "replace": list(plan.replace),
        },
        "resource_changes": [_change(c) for c in plan.changes],
        "resource_drift": [_drift(d) for d in plan.drift],
        "resource_moves": [{"from": old, "to": new} for old, new in plan.moved],
        "state_upgrades": list(plan.upgraded),
        "summary": {
            "add": summary.add,
            "change": summary.change,
            "replace": summary.replace,
            "destroy": summary.destroy,
            "moved": summary.moved,
        },
        "has_changes": plan.has_changes,
        "warnings": list(plan.warnings),
    }


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, sort_keys=False) + "\n"


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Rebuild a Plan from its JSON form (raises KeyError/ValueError/TypeError on a bad document)."""
    state = data["state"]
    options = data["options"]
    return Plan(
        changes=tuple(
            ResourceChange(
                address=str(c["address"]),
                kind=str(c["kind"]),
                action=Action(c["action"]),
                reason=ActionReason(c["reason"]),
                before=c["before"],
                after=c["after"],
                replace_paths=tuple(c.get("replace_paths", ())),
                dependencies=tuple(c.get("dependencies", ())),
                notes=tuple(c.get("notes", ())),
            )
            for c in data["resource_changes"]
        ),
        drift=tuple(
            Drift(str(d["address"]), str(d["kind"]), d["before"], d["after"]) for d in data["resource_drift"]
        ),
        workspace_id=str(data["workspace_id"]),
        lineage=state["lineage"],
        serial=state["serial"],
        specs_hash=str(data["specs_hash"]),
        destroy=bool(options["destroy"]),
        refresh=bool(options["refresh"]),
        targets=tuple(options["targets"]),
        replace=tuple(options["replace"]),
        created_at=str(data["created_at"]),
        cmlplan_version=str(data["cmlplan_version"]),
        warnings=tuple(data.get("warnings", ())),
        moved=tuple((str(m["from"]), str(m["to"])) for m in data.get("resource_moves", ())),
        upgraded=tuple(str(a) for a in data.get("state_upgrades", ())),
    )


def _change(change: ResourceChange) -> dict[str, Any]:
    return {
        "address": change.address,
        "kind": change.kind,
        "action": change.action.value,
        "reason": change.reason.value,
        "reason_text": change.reason.sentence,
        "before": mask(change.before),
        "after": mask(change.after),
        "replace_paths": list(change.replace_paths),
        "dependencies": list(change.dependencies),
        "notes": list(change.notes),
    }


def _drift(drift: Drift) -> dict[str, Any]:
    return {"address": drift.address, "kind": drift.kind, "before": mask(drift.prior), "after": mask(drift.live)}
