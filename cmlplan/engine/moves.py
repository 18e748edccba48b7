"""Moves: renaming a model's addresses in state before planning, so the plan sees no delete+create.

The proxy routes by access-key hash and replicas are found by their recorded process names, so
renaming the model, its builds and its deployment in state (and the attributes naming them) is the
whole move: the provider is never asked to stop or start anything for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CmlplanError
from ..state.document import StateDocument
from .addresses import model_of


class MoveError(CmlplanError):
    """A move that cannot be made: its target already exists in state."""


@dataclass(frozen=True)
class Move:
    source: str  # model.<project>/<name>
    target: str


def moves_of(config: Any) -> tuple[Move, ...]:
    """The specs' Moved documents, chains followed to their end (a -> b, b -> c is a -> c)."""
    edges = {r.spec.from_: r.spec.to for r in config.of_kind("Moved")}
    found = []
    for source in sorted(edges):
        target = edges[source]
        while target in edges:  # the specs were checked: no cycle
            target = edges[target]
        found.append(Move(source, target))
    return tuple(found)


def pending_moves(moves: tuple[Move, ...], state: StateDocument) -> tuple[Move, ...]:
    """The moves state still needs (a source it records); a target it already records is an error."""
    pending = []
    for move in moves:
        if move.source not in state.resources:
            continue  # already moved (or never applied): nothing to do, as Terraform
        if move.target in state.resources:
            raise MoveError(f"cannot move {move.source} to {move.target}: {move.target} already exists in state")
        pending.append(move)
    return tuple(pending)


def renames(move: Move, state: StateDocument) -> dict[str, str]:
    """Old address -> new address for the model and everything recorded under it."""
    old, new = move.source.split(".", 1)[1], move.target.split(".", 1)[1]
    found = {}
    for address, resource in state.resources.items():
        if address == move.source or (resource.kind in ("build", "deployment") and model_of(address) == move.source):
            kind, rest = address.split(".", 1)
            found[address] = f"{kind}.{new}{rest[len(old):]}"
    return found


def apply_move(move: Move, state: StateDocument) -> dict[str, str]:
    """Rename ``move``'s addresses in ``state`` (tracked as changes, so the next save records them).

    In memory only: a plan that is not applied leaves the stored state as it was. The key file
    follows when the apply saves (``Session.apply``).
    """
    mapping = renames(move, state)
    project, name = move.target.split(".", 1)[1].split("/", 1)
    for old, new in mapping.items():
        resource = state.remove_resource(old)
        assert resource is not None
        attributes = dict(resource.attributes)
        if "model" in attributes:
            attributes["model"] = move.target
        if resource.kind in ("model", "deployment"):
            attributes["project"], attributes["name"] = project, name
        dependencies = [mapping.get(d, _project_dependency(d, project, move)) for d in resource.dependencies]
        state.set_resource(new, resource.model_copy(update={"attributes": attributes, "dependencies": dependencies}))
        state.copy_history(old, new)
    for record in state.builds.pop(move.source, []):
        state.add_build(move.target, record)
    return mapping


def _project_dependency(dependency: str, project: str, move: Move) -> str:
    """A moved model depends on its new project, not its old one."""
    old_project = move.source.split(".", 1)[1].split("/", 1)[0]
    return f"project.{project}" if dependency == f"project.{old_project}" else dependency
