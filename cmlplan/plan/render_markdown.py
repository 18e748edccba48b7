"""The plan as Markdown for a pull-request comment: what matters first, every diff folded.

A summary line; destroys and replaces flagged at the top (they are what a reviewer must not
miss); drift in its own section; then one collapsible ``<details>`` per resource holding its diff
(secrets masked, as in the text plan). A long diff is cut with a note, so a comment stays within
what a code host accepts and a reviewer can still read it.
"""

from __future__ import annotations

import html

from .action import Action
from .change import ResourceChange
from .plan import Plan
from .render_text import change_body, change_heading, drift_body, upgrade_line

MAX_LINES = 40  # per resource
MAX_LINE_CHARS = 200

_DANGER = (Action.DELETE, Action.REPLACE, Action.CREATE_THEN_DELETE)


def render_markdown(plan: Plan) -> str:
    changes = [c for c in plan.changes if c.action.changes]
    lines = ["### cmlplan plan", ""]
    lines.append(
        f"**{plan.summary.line}**" if changes or plan.moved else "**No changes.** The live world matches the specs."
    )
    danger = [c for c in changes if c.action in _DANGER]
    if danger:
        lines += ["", "> [!WARNING]", f"> **{_danger_title(danger)}**"]
        lines += [f"> - `{c.action.symbol}` {_code(change_heading(c))}" for c in danger]
    if plan.drift:
        lines += ["", f"#### Changed outside cmlplan ({len(plan.drift)})", ""]
        lines.append("Found while refreshing; shown here, and acted on only where the changes below say so.")
        for drift in plan.drift:
            what = "was deleted outside cmlplan" if drift.live is None else "has changed"
            lines += _section(f"<code>{html.escape(drift.address, quote=False)}</code> {what}", drift_body(drift))
    if plan.moved:
        lines += ["", f"#### Moved ({len(plan.moved)})", ""]
        lines.append("Renamed in state only: nothing is stopped, started or redeployed.")
        lines.append("")
        lines += [f"- `{old}` → `{new}`" for old, new in plan.moved]
    if changes:
        lines += ["", f"#### Changes ({len(changes)})"]
        for change in changes:
            lines += _section(_summary(change), change_body(change))
    if plan.upgraded:
        lines += ["", upgrade_line(plan)]
    for warning in plan.warnings:
        lines += ["", f"> **Warning:** {html.escape(warning, quote=False)}"]
    return "\n".join(lines) + "\n"


def _danger_title(danger: list[ResourceChange]) -> str:
    destroys = sum(1 for c in danger if c.action is Action.DELETE)
    replaces = len(danger) - destroys
    parts = [f"{n} to {word}" for n, word in ((destroys, "destroy"), (replaces, "replace")) if n]
    return " and ".join(parts) + ":"


def _summary(change: ResourceChange) -> str:
    heading = change_heading(change)
    rest = heading[len(change.address) :]
    return f"<code>{html.escape(change.action.symbol, quote=False)} {html.escape(change.address, quote=False)}</code>{html.escape(rest, quote=False)}"


def _section(summary: str, body: list[str]) -> list[str]:
    shown = [_diff_line(line) for line in body[:MAX_LINES]]
    out = ["", f"<details><summary>{summary}</summary>", "", "```diff", *shown, "```"]
    if len(body) > MAX_LINES:
        hidden = len(body) - MAX_LINES
        out += ["", f"_{hidden} more line{'s' if hidden != 1 else ''} not shown; run `cmlplan plan` for the whole diff._"]
    out += ["", "</details>"]
    return out


def _code(heading: str) -> str:
    address, _, rest = heading.partition(" ")
    return f"`{address}` {html.escape(rest, quote=False)}"


def _diff_line(line: str) -> str:
    """Put the change symbol in column one, where a ```diff block colours it; cut very long lines."""
    if len(line) > MAX_LINE_CHARS:
        line = line[: MAX_LINE_CHARS - 1] + "…"
    line = line.replace("```", "'''")  # a value must not end the code block
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    for symbol, marker in (("-/+ ", "!"), ("+/- ", "!"), ("+ ", "+"), ("- ", "-"), ("~ ", "!")):
        if stripped.startswith(symbol):
            return marker + indent + stripped[len(symbol) - 1 :]
    return " " + line
