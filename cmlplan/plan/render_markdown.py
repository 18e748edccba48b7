"""The plan as Markdown, for pull-request comments: a summary table, then the diffs folded."""

from __future__ import annotations

from .plan import Plan
from .render_text import render_text

_EMOJI_FREE_SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "create-then-delete": "+/-", "delete": "-"}


def render_markdown(plan: Plan) -> str:
    changes = [c for c in plan.changes if c.action.changes]
    lines = ["### cmlplan plan", ""]
    if not changes:
        lines.append("**No changes.** The live world matches the specs.")
    else:
        lines.append(f"**{plan.summary.line}**")
        lines.append("")
        lines.append("| | resource | action | why |")
        lines.append("| --- | --- | --- | --- |")
        for change in changes:
            symbol = _EMOJI_FREE_SYMBOL.get(change.action.value, "")
            lines.append(
                f"| `{symbol}` | `{change.address}` | {change.action.value} | {change.reason.sentence or ''} |"
            )
    if plan.drift:
        lines.append("")
        lines.append(f"**{len(plan.drift)} resource(s) changed outside cmlplan.**")
    body = [_diff_line(line) for line in render_text(plan).rstrip().splitlines()]
    lines += ["", "<details><summary>Full plan</summary>", "", "```diff", *body, "```", "", "</details>", ""]
    return "\n".join(lines)


def _diff_line(line: str) -> str:
    """Put the change symbol in column one, where a ```diff block colours it."""
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    for symbol, marker in (("-/+ ", "!"), ("+/- ", "!"), ("+ ", "+"), ("- ", "-"), ("~ ", "!")):
        if stripped.startswith(symbol):
            return marker + indent + stripped[len(symbol) - 1 :]
    return " " + line
