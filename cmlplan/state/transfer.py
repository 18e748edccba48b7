"""Moving state between backends and in or out of one, with Terraform's lineage and serial checks.

``migrate`` copies a state to another backend unchanged (same lineage, same serial). ``push``
replaces a backend's state with a document from a file only if it is the same state (lineage)
and not older (serial) than what is stored, so a stale copy never overwrites newer work.
"""

from __future__ import annotations

from cmlplan.state.backend import StateBackend
from cmlplan.state.document import StateDocument, StateError


def migrate(source: StateBackend, destination: StateBackend) -> StateDocument:
    """Copy the state of ``source`` into ``destination`` as it is; the caller holds both locks."""
    doc = source.read()
    if doc is None:
        raise StateError(f"{source.describe()} holds no state; nothing to migrate")
    existing = destination.read()
    if existing is not None:
        if existing == doc:
            return doc  # migrated before: nothing to do
        raise StateError(
            f"{destination.describe()} already holds a state (lineage {existing.lineage}, serial {existing.serial}); "
            f"refusing to replace it with {source.describe()} (lineage {doc.lineage}, serial {doc.serial})"
        )
    destination.checkpoint(doc)
    return doc


def check_push(current: StateDocument | None, pushed: StateDocument, source: str, force: bool = False) -> None:
    """Refuse to push another lineage, an older serial, or a different state under the same serial."""
    if current is None:
        return
    if pushed.lineage != current.lineage:
        raise StateError(
            f"{source} belongs to another state (lineage {pushed.lineage}, the stored state has {current.lineage}); "
            "refusing to push it"
        )
    if force:
        return
    if pushed.serial < current.serial:
        raise StateError(
            f"{source} is older than the stored state (serial {pushed.serial} < {current.serial}); refusing to push it, "
            "pull the current state first (or use -force to overwrite newer work)"
        )
    if pushed.serial == current.serial and pushed != current:
        raise StateError(
            f"{source} differs from the stored state but has the same serial {current.serial}; refusing to push it "
            "(use -force to overwrite)"
        )


def push(backend: StateBackend, pushed: StateDocument, source: str, force: bool = False) -> StateDocument:
    """Store ``pushed`` as the next serial of ``backend``'s state; the caller holds the lock."""
    current = backend.read()
    check_push(current, pushed, source, force)
    base = pushed.model_copy(deep=True, update={"serial": current.serial if current is not None else pushed.serial})
    if current is None:
        backend.checkpoint(base)
        return base
    return backend.write(base)
