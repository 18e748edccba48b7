"""Recording an apply's finished actions: durable one by one, at O(1) cost, synced in groups.

Each finished action becomes a ``StateDelta`` (what it changed, the next serial). Deltas staged
while a write is in flight are written together by the next one, with one fsync or one
transaction (group commit), so concurrently finishing actions share the cost of durability. An
action's ``save`` is awaited before it counts as done, so nothing depends on an unrecorded
action. The first write of a run stores the whole document when the backend asks for it (no
state yet, or a journal left by a killed run); ``close`` folds the run's deltas into the document.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Sequence
from typing import Protocol

from cmlplan.state.document import StateDelta, StateDocument, StateError


class AppendingBackend(Protocol):
    """The part of a ``StateBackend`` a recorder uses."""

    def append_ready(self) -> bool: ...

    def append(self, deltas: Sequence[StateDelta]) -> None: ...

    def checkpoint(self, doc: StateDocument) -> None: ...


class StateRecorder:
    """Saves ``document`` after each action for one run against ``backend`` (the caller holds the lock)."""

    def __init__(self, backend: AppendingBackend) -> None:
        self.backend = backend
        self._ready = False
        self._appended = False
        self._pending: list[tuple[StateDelta, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._failure: StateError | None = None

    def save(self, document: StateDocument) -> Awaitable[None]:
        """Stage what changed in ``document`` as its next serial; await the result for durability.

        Call it in the order the changes were made (it is synchronous up to the await).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._failure is not None:
            done.set_exception(StateError(f"not recorded: an earlier state write failed ({self._failure})"))
            return done
        if not self._ready and not self.backend.append_ready():
            document.take_delta()
            try:
                self.backend.checkpoint(document)
            except StateError as exc:
                self._failure = exc
                done.set_exception(exc)
                return done
            self._ready = True
            done.set_result(None)
            return done
        self._ready = True
        self._pending.append((document.take_delta(), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            if self._failure is not None:
                error = StateError(f"not recorded: an earlier state write failed ({self._failure})")
                for _delta, done in batch:
                    done.set_exception(error)
                continue
            try:
                await asyncio.to_thread(self.backend.append, [delta for delta, _ in batch])
            except StateError as exc:
                self._failure = exc
                for _delta, done in batch:
                    done.set_exception(exc)
                continue
            except BaseException as exc:  # a bug or cancellation: the waiting actions must hear of it
                for _delta, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                raise
            self._appended = True
            for _delta, done in batch:
                done.set_result(None)

    async def close(self, document: StateDocument) -> None:
        """Wait for staged writes, then fold the run's deltas into the document (when all were recorded)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._failure is None and self._appended:
            try:
                await asyncio.to_thread(self.backend.checkpoint, document)
            except StateError as exc:  # every action is recorded already; the next load folds them
                print(f"Warning: the recorded actions stay in the state journal for now: {exc}", file=sys.stderr)
