"""The interface the engine uses to load, save and lock state, whatever stores it.

Only the local file backend exists today; the engine depends on this Protocol so a remote backend
can be added without touching plan or apply code.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from cmlplan.state.document import StateDocument
from cmlplan.state.lock import LockInfo

# Entering the lock yields the LockInfo that now holds it; leaving releases it if still ours.
Lock = AbstractContextManager[LockInfo]


class StateBackend(Protocol):
    """Where a workspace's state lives. Every method raises ``StateError`` for user-facing problems."""

    def read(self) -> StateDocument | None:
        """The stored state, or None if there is none yet; never a partially valid document."""
        ...

    def write(self, doc: StateDocument) -> StateDocument:
        """Persist ``doc`` with ``serial + 1`` and this cmlplan's version; returns what was written.

        ``doc`` itself is left unchanged: keep working on the returned document.
        """
        ...

    def lock(self, info: LockInfo, wait: float = 0.0) -> Lock:
        """A context manager holding the state lock for ``info``, retrying for ``wait`` seconds."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Remove a lock left by a dead run, only if ``lock_id`` matches it."""
        ...

    def describe(self) -> str:
        """Where the state is, for messages (e.g. ``local state file .cmlplan/state.json``)."""
        ...
