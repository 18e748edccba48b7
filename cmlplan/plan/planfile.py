"""Saved plans (-out FILE): the plan JSON plus what it was made against, refused when stale."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CmlplanError
from .jsonformat import plan_from_dict, plan_to_dict
from .plan import Plan

SAVED_PLAN_KIND = "cmlplan-saved-plan"


class PlanFileError(CmlplanError):
    """A saved plan that cannot be read or no longer applies."""


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    data = {"kind": SAVED_PLAN_KIND, "plan": plan_to_dict(plan)}
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        raise PlanFileError(f"{target}: cannot write the plan ({exc.strerror})") from None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(f"{source}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{source}: cannot read the plan ({exc})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or an int of 4300+ digits
        where = f":{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise PlanFileError(f"{source}{where}: not a saved plan (invalid JSON)") from None
    if not isinstance(data, dict) or data.get("kind") != SAVED_PLAN_KIND or not isinstance(data.get("plan"), dict):
        raise PlanFileError(f"{source}: not a saved plan (write one with `cmlplan plan -out FILE`)")
    version = str(data["plan"].get("format_version", ""))
    if not version.startswith("1."):
        raise PlanFileError(f"{source}: plan format {version!r} is not supported by this cmlplan (reads 1.x)")
    try:
        return plan_from_dict(data["plan"])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise PlanFileError(f"{source}: damaged saved plan ({type(exc).__name__}: {exc})") from None
