"""The interface the engine uses to load, save and lock state, whatever stores it.

The local file backend and PostgreSQL implement it; the engine depends on this Protocol only, and
``open.open_backend`` picks one from the Workspace's ``state:`` settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from cmlplan.state.document import StateDelta, StateDocument
from cmlplan.state.lock import LockInfo

# Entering the lock yields the LockInfo that now holds it; leaving releases it if still ours.
Lock = AbstractContextManager[LockInfo]


class StateBackend(Protocol):
    """Where a workspace's state lives. Every method raises ``StateError`` for user-facing problems."""

    # used from several machines (PostgreSQL): what must agree between them, such as the fingerprint
    # key, is given to each, never made by whichever runs first
    shared: bool

    def read(self) -> StateDocument | None:
        """The stored state, or None if there is none yet; never a partially valid document."""
        ...

    def write(self, doc: StateDocument) -> StateDocument:
        """Persist ``doc`` with ``serial + 1`` and this cmlplan's version; returns what was written.

        ``doc`` itself is left unchanged: keep working on the returned document.
        """
        ...

    def checkpoint(self, doc: StateDocument) -> None:
        """Store ``doc`` whole at its own serial, folding in whatever was appended before it."""
        ...

    def append_ready(self) -> bool:
        """True when ``append`` may record deltas now (else write a checkpoint first)."""
        ...

    def append(self, deltas: Sequence[StateDelta]) -> None:
        """Durably record ``deltas`` (the next serials, in order) at a cost independent of the state's size."""
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
