"""A whole plan: the changes, the drift, and what it was made against."""

from __future__ import annotations

from dataclasses import dataclass, field

from .action import Action
from .change import Drift, ResourceChange


@dataclass(frozen=True)
class PlanSummary:
    add: int = 0
    change: int = 0
    replace: int = 0
    destroy: int = 0
    moved: int = 0  # models (with their builds and deployment) renamed in state

    @property
    def total(self) -> int:
        return self.add + self.change + self.replace + self.destroy

    @property
    def line(self) -> str:
        moved = f", {self.moved} moved" if self.moved else ""
        return (
            f"Plan: {self.add} to add, {self.change} to change, {self.replace} to replace, "
            f"{self.destroy} to destroy{moved}."
        )


@dataclass(frozen=True)
class Plan:
    changes: tuple[ResourceChange, ...]
    drift: tuple[Drift, ...] = ()
    workspace_id: str = ""
    lineage: str | None = None  # state lineage the plan was made against (None: no state yet)
    serial: int | None = None
    specs_hash: str = ""
    destroy: bool = False
    refresh: bool = True
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    created_at: str = ""
    cmlplan_version: str = ""
    warnings: tuple[str, ...] = field(default=())
    moved: tuple[tuple[str, str], ...] = ()  # (from, to) of every address a Moved document renames
    # addresses whose recorded secret fingerprints apply rewrites in today's form (state only:
    # nothing running changes, so they are not changes and -detailed-exitcode stays 0)
    upgraded: tuple[str, ...] = ()

    @property
    def moved_models(self) -> tuple[tuple[str, str], ...]:
        return tuple(pair for pair in self.moved if pair[0].startswith("model."))

    @property
    def summary(self) -> PlanSummary:
        counts = {"add": 0, "change": 0, "replace": 0, "destroy": 0}
        for change in self.changes:
            if change.action is Action.CREATE:
                counts["add"] += 1
            elif change.action is Action.UPDATE:
                counts["change"] += 1
            elif change.action in (Action.REPLACE, Action.CREATE_THEN_DELETE):
                counts["replace"] += 1
            elif change.action is Action.DELETE:
                counts["destroy"] += 1
        return PlanSummary(**counts, moved=len(self.moved_models))

    @property
    def has_changes(self) -> bool:
        return bool(self.moved) or any(c.action.changes for c in self.changes)

    def change_for(self, address: str) -> ResourceChange | None:
        for change in self.changes:
            if change.address == address:
                return change
        return None
