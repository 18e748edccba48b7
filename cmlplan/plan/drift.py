"""Which drift counts: attributes a resource's ``lifecycle.ignore_changes`` lists are not drift.

One rule for the regular plan's drift section and for ``plan -refresh-only`` (a scheduled drift
job), so an autoscaler that owns ``replicas`` is never reported by either.
"""

from __future__ import annotations

from .change import Drift
from .diff import without_paths

# Attributes that follow from another: ignoring the first ignores these too (an autoscaler that owns
# `replicas` also starts and stops the processes that carry them).
FOLLOWS = {"replicas": ("processes",)}


def counts_as_drift(drift: Drift, ignored: tuple[str, ...]) -> bool:
    """Whether ``drift`` changed something outside ``ignored`` (a deletion always counts)."""
    if drift.live is None or drift.prior is None:
        return True  # deleted outside cmlplan: never ignorable
    ignored = (*ignored, *(follower for path in ignored for follower in FOLLOWS.get(path, ())))
    return without_paths(drift.prior, ignored) != without_paths(drift.live, ignored)
