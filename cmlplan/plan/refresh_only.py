"""A refresh-only plan: only what changed outside cmlplan, minus what the specs say to ignore.

For a scheduled drift job: it acts on nothing and proposes nothing, so its exit code (with
``-detailed-exitcode``) means "something drifted" and nothing else. Attributes listed in a
resource's ``lifecycle.ignore_changes`` (e.g. replicas owned by an autoscaler) are not drift.
"""

from __future__ import annotations

from dataclasses import replace

from .drift import counts_as_drift
from .plan import Plan
from .render_text import drift_body


def refresh_only(plan: Plan) -> Plan:
    """``plan`` with no changes and only the drift that counts."""
    ignored = {change.address: change.ignored_paths for change in plan.changes}
    drift = tuple(d for d in plan.drift if counts_as_drift(d, ignored.get(d.address, ())))
    return replace(plan, changes=(), drift=drift)


def render_drift(plan: Plan) -> str:
    """The drift of a refresh-only plan for people: one heading per drifted address, then its diff."""
    if not plan.drift:
        return "No drift: nothing changed outside cmlplan.\n"
    out = [f"{len(plan.drift)} resource{'s' if len(plan.drift) != 1 else ''} changed outside cmlplan:", ""]
    for drift in plan.drift:
        out.append(f"  # {drift.address} " + ("was deleted outside cmlplan" if drift.live is None else "has changed"))
        out.extend(drift_body(drift))
        out.append("")
    return "\n".join(out)
