"""The plan for people in a terminal: Terraform's symbols, nested attribute diffs, secrets masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..values import is_sensitive_key, mask
from .action import Action
from .change import Drift, ResourceChange
from .diff import AttributeChange, attribute_changes, dotted
from .plan import Plan
from .style import Style

_COLOR = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "red",
    Action.CREATE_THEN_DELETE: "yellow",
    Action.DELETE: "red",
}

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "will be replaced (destroyed, then created)",
    Action.CREATE_THEN_DELETE: "will be replaced (the new one is created before the old one is destroyed)",
    Action.DELETE: "will be destroyed",
}


def render_text(plan: Plan, color: bool = False) -> str:
    style = Style(color)
    out: list[str] = []
    if plan.drift:
        out.append(style("Changed outside cmlplan", "bold") + " (found while refreshing; shown, not by itself acted on):")
        out.append("")
        for drift in plan.drift:
            out.extend(_drift_lines(drift, style))
            out.append("")
    changes = [c for c in plan.changes if c.action.changes]
    if not changes and not plan.moved:
        out.append(style("No changes.", "bold", "green") + " The live world matches the specs.")
        if plan.upgraded:
            out.append(upgrade_line(plan))
        for warning in plan.warnings:
            out.append(style("Warning: ", "yellow", "bold") + warning)
        return "\n".join(out) + "\n"
    out.append("cmlplan will perform the following actions:")
    out.append("")
    for line in moved_lines(plan):
        out.append(style(line, "bold"))
    if plan.moved:
        out.append("")
    for change in changes:
        out.extend(_change_lines(change, style))
        out.append("")
    if plan.upgraded:
        out.append(upgrade_line(plan))
    for warning in plan.warnings:
        out.append(style("Warning: ", "yellow", "bold") + warning)
    out.append(style(plan.summary.line, "bold"))
    return "\n".join(out) + "\n"


def upgrade_line(plan: Plan) -> str:
    """What apply rewrites in state alone: fingerprints in an older form (nothing running changes)."""
    count = len(plan.upgraded)
    return (
        f"State upgrade: apply rewrites what {count} resource{'s' if count != 1 else ''} record{'' if count != 1 else 's'}"
        " of secret values and keys in today's form: keyed fingerprints, no unsalted ones"
        " (state only; nothing running changes)."
    )


def moved_lines(plan: Plan) -> list[str]:
    """One line per renamed address: a move changes state only, nothing live is stopped or started."""
    return [f"  # {old} has moved to {new}" for old, new in plan.moved]


def change_heading(change: ResourceChange) -> str:
    """``<address> will be <verb>[, because <reason>]``: one resource's change as a sentence."""
    reason = change.reason.sentence
    return f"{change.address}{_title(change)} {_VERB[change.action]}" + (f", because {reason}" if reason else "")


def change_body(change: ResourceChange) -> list[str]:
    """The attribute lines of one change (secrets masked, no colour), without its heading."""
    return list(_change_lines(change, Style(False)))[2:]


def drift_body(drift: Drift) -> list[str]:
    """The attribute lines of one drifted resource (masked, no colour), without its heading."""
    return list(_drift_lines(drift, Style(False)))[1:]


def _change_lines(change: ResourceChange, style: Style) -> Iterator[str]:
    color = _COLOR.get(change.action, "bold")
    reason = change.reason.sentence
    header = f"  # {change.address}{_title(change)} {_VERB[change.action]}"
    if reason:
        header += f", because {reason}"
    yield style(header, "bold")
    yield "  " + style(change.action.symbol, color) + f" {change.address}"
    before = mask(change.before) if change.action is not Action.CREATE else None
    after = mask(change.after) if change.action is not Action.DELETE else None
    if change.action is Action.CREATE:
        for path, value in _leaves(after or {}):
            yield f"      {style('+', 'green')} {path} = {_show(value)}"
    elif change.action is Action.DELETE:
        for path, value in _leaves(before or {}):
            yield f"      {style('-', 'red')} {path} = {_show(value)}"
    else:
        diffs = masked_changes(change.before, change.after)
        yield from _diff_lines(diffs, change.replace_paths, style)
        hidden = _unchanged_count(before or {}, diffs)
        if hidden:
            yield style(f"        ({hidden} unchanged attribute{'s' if hidden != 1 else ''} hidden)", "dim")
    for note in change.notes:
        yield f"      {style('#', 'cyan')} {note}"


def _title(change: ResourceChange) -> str:
    """A model's metadata.description beside its address, so people know which one it is."""
    title = (change.after or {}).get("title") or (change.before or {}).get("title")
    return f" ({title})" if change.kind == "model" and isinstance(title, str) else ""


def _drift_lines(drift: Drift, style: Style) -> Iterator[str]:
    if drift.live is None:
        yield style(f"  # {drift.address} was deleted outside cmlplan", "bold")
        return
    yield style(f"  # {drift.address} has changed", "bold")
    yield from _diff_lines(masked_changes(drift.prior, drift.live), (), style)


def masked_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[AttributeChange]:
    """The leaves that differ, compared unmasked and shown masked: a new secret behind a fingerprint
    is a change people must see (as ``(sensitive value) -> (sensitive value)``), not a silent one."""
    return [
        AttributeChange(
            c.path, c.before if c.added else _masked_at(c.path, c.before), c.after if c.removed else _masked_at(c.path, c.after)
        )
        for c in attribute_changes(before, after)
    ]


def _masked_at(path: tuple[str | int, ...], value: Any) -> Any:
    """``value`` masked as the leaf at ``path``: sensitive when any key on the way is."""
    sensitive = next((part for part in path if isinstance(part, str) and is_sensitive_key(part)), None)
    return mask(value, sensitive or (str(path[-1]) if path else ""))


def _diff_lines(diffs: list[AttributeChange], replace_paths: tuple[str, ...], style: Style) -> Iterator[str]:
    for change in diffs:
        path = dotted(change.path)
        forces = style("  # forces replacement", "red") if path in replace_paths else ""
        if change.added:
            yield f"      {style('+', 'green')} {path} = {_show(change.after)}{forces}"
        elif change.removed:
            yield f"      {style('-', 'red')} {path} = {_show(change.before)}{forces}"
        else:
            yield f"      {style('~', 'yellow')} {path} = {_show(change.before)} -> {_show(change.after)}{forces}"


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if prefix == "manifest" and isinstance(value, dict):
        yield prefix, f"({len(value)} file{'s' if len(value) != 1 else ''}; see notes)"
    elif isinstance(value, dict) and value:
        for key in value:
            yield from _leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _unchanged_count(before: dict[str, Any], diffs: list[AttributeChange]) -> int:
    touched = {c.path[0] for c in diffs if c.path}
    return sum(1 for key in before if key not in touched)


def _show(value: Any) -> str:
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return f"({len(value)} item{'s' if len(value) != 1 else ''})"  # computed lists: a count, not a JSON line
    if isinstance(value, str):
        if value.startswith("(") and value.endswith(")"):
            return value  # (known after apply), (sensitive value)
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)
