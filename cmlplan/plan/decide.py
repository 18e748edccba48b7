"""decide_action: the one pure function that chooses what happens to a resource."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .action import Action, ActionReason
from .diff import attribute_changes, matches, without_paths

_SOURCE_PATHS = frozenset({"build", "build_hash", "hash"})


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: ActionReason
    replace_paths: tuple[str, ...] = ()


def decide_action(
    *,
    current: dict[str, Any] | None,
    planned: dict[str, Any] | None,
    in_state: bool,
    requires_replace: Sequence[str] = (),
    create_before_destroy: bool = False,
    replace_requested: bool = False,
    ignore_changes: Sequence[str] = (),
    drifted: bool = False,
    destroying: bool = False,
) -> Decision:
    """Choose the action from what is there now (``current``, refreshed) and what should be.

    ``in_state`` tells a resource never created from one that vanished outside cmlplan;
    ``requires_replace`` are the dotted paths whose change the provider cannot make in place.
    """
    if planned is None:
        if current is None and not in_state:
            return Decision(Action.NOOP, ActionReason.NONE)
        reason = ActionReason.DELETE_BECAUSE_DESTROY if destroying else ActionReason.DELETE_BECAUSE_NO_SPEC
        return Decision(Action.DELETE, reason)
    if current is None:
        reason = ActionReason.CREATE_BECAUSE_GONE if in_state else ActionReason.CREATE_BECAUSE_NEW
        return Decision(Action.CREATE, reason)
    replace_action = Action.CREATE_THEN_DELETE if create_before_destroy else Action.REPLACE
    if replace_requested:
        return Decision(replace_action, ActionReason.REPLACE_BY_REQUEST)
    changes = attribute_changes(
        without_paths(current, ignore_changes), without_paths(planned, ignore_changes)
    )
    if not changes:
        return Decision(Action.NOOP, ActionReason.NONE)
    forcing = tuple(sorted({c.dotted for c in changes if matches(c.path, requires_replace)}))
    if forcing:
        source = any(path.split(".")[0] in _SOURCE_PATHS for path in forcing)
        reason = ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED if source else ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE
        return Decision(replace_action, reason, forcing)
    reason = ActionReason.UPDATE_BECAUSE_DRIFT if drifted else ActionReason.UPDATE_BECAUSE_SPEC_CHANGED
    return Decision(Action.UPDATE, reason)
