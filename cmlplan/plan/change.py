"""A planned change to one resource: data plus a reason, the three states kept apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .action import Action, ActionReason


@dataclass(frozen=True)
class ResourceChange:
    address: str
    kind: str
    action: Action
    reason: ActionReason
    before: dict[str, Any] | None  # refreshed: what is really there (or the state when not refreshed)
    after: dict[str, Any] | None  # planned
    replace_paths: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # extra lines for people (e.g. a build's file changes)
    ignored_paths: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Drift:
    """A resource that changed outside cmlplan: the last applied state against what is live."""

    address: str
    kind: str
    prior: dict[str, Any] | None
    live: dict[str, Any] | None
