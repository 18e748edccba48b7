"""A refresh-only plan: only what changed outside cmlplan, minus what the specs say to ignore.

For a scheduled drift job: it acts on nothing and proposes nothing, so its exit code (with
``-detailed-exitcode``) means "something drifted" and nothing else. Attributes listed in a
resource's ``lifecycle.ignore_changes`` (e.g. replicas owned by an autoscaler) are not drift.
"""

from __future__ import annotations

from dataclasses import replace

from .change import Drift
from .diff import without_paths
from .plan import Plan
from .render_text import drift_body


def refresh_only(plan: Plan) -> Plan:
    """``plan`` with no changes and only the drift that counts."""
    ignored = {change.address: change.ignored_paths for change in plan.changes}
    drift = tuple(d for d in plan.drift if _counts(d, ignored.get(d.address, ())))
    return replace(plan, changes=(), drift=drift)


# Attributes that follow from another: ignoring the first ignores these too (an autoscaler that owns
# `replicas` also starts and stops the processes that carry them).
_FOLLOWS = {"replicas": ("processes",)}


def _counts(drift: Drift, ignored: tuple[str, ...]) -> bool:
    if drift.live is None or drift.prior is None:
        return True  # deleted outside cmlplan: never ignorable
    ignored = (*ignored, *(follower for path in ignored for follower in _FOLLOWS.get(path, ())))
    return without_paths(drift.prior, ignored) != without_paths(drift.live, ignored)


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
