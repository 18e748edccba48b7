"""The proxy's single writer: one thread, group commit, results handed back to the event loop.

Predictions put their row on a queue with a callback (other writes await ``submit``); the thread
takes everything queued (after COMMIT_DELAY_SECONDS when writes arrive together), runs it in one
transaction and commits once, so N concurrent predictions cost one fsync, and hands the outcomes
back to the loop in one ``call_soon_threadsafe``: the event loop never waits on the disk. A refused operation (unknown UUID, other project) fails alone;
a database error (full, read-only, connection lost) rolls the batch back and fails every
operation in it with StoreError: nothing half-written, nothing already stored touched.

Predictions land in the store's inbox (no index: a commit writes one page); once MOVE_ROWS have
gathered, or MOVE_AFTER_SECONDS after the first of them, the thread moves them into the indexed
table in one statement, between batches. A failed move leaves them in the inbox, where reads
still find them, for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any

from .backend import Store, StoreError
from .records import PredictionRow, UnknownPrediction, WrongProject

log = logging.getLogger("cmlplan.proxy")

MAX_BATCH = 1024
# A commit's fixed cost (the fsync, the thread's wake-up, the hand-back to the loop) is ~200-300 us
# of CPU here, paid per batch. Under concurrent tracking the writer waits this long before taking a
# batch, so that it holds several writes rather than one or two (2.2 -> ~4 at 8 clients, 2.8 ->
# ~6 at 64 in bench/metrics.py); a lone caller (last batch of one) never waits.
COMMIT_DELAY_SECONDS = 0.0003
# A prediction whose model has calls waiting for a replica asks its commit to linger: its client
# waits a little longer, the replicas stay busy with the queue meanwhile, and the commit carries
# more rows (each fdatasync costs ~100-170 us of CPU here whatever it carries). The batch waits at
# most this long, or until it holds LINGER_ROWS.
LINGER_SECONDS = 0.001
LINGER_ROWS = 32
MOVE_ROWS = 2048  # ~5 ms of indexing in one transaction, paid once per this many predictions
MOVE_AFTER_SECONDS = 2.0
Operation = Callable[[Store], Any]
_REFUSALS = (UnknownPrediction, WrongProject, ValueError)
Settled = Callable[[Any, "BaseException | None"], None]  # (result, error), called on the loop
_Item = tuple[Operation | PredictionRow, asyncio.AbstractEventLoop, Settled, bool]  # ..., linger


class StoreWriter:
    def __init__(self, open_store: Callable[[], Store]) -> None:
        """open_store runs on the writer thread; its StoreError surfaces from ``start``."""
        self._open = open_store
        self._queue: SimpleQueue[_Item | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cmlplan-metrics-writer", daemon=True)
        self._ready = threading.Event()
        self._startup_error: StoreError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.operations = 0
        self.moves = 0
        self._unmoved = 0  # predictions in the inbox, as far as this writer knows (it is their only writer)
        self._unmoved_since = 0.0  # when the oldest of them was committed

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    async def submit(self, operation: Operation | PredictionRow) -> Any:
        """Run operation(store) in the next batch; a PredictionRow is inserted with its batch's others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((operation, loop, partial(_settle, future), False))
        return await future

    def put(self, operation: Operation | PredictionRow, settled: Settled, linger: bool = False) -> None:
        """Like submit, for the request path: ``settled(result, error)`` runs on this loop afterwards;
        ``linger``: the caller's model has a queue, so its commit may wait for more rows."""
        loop = self._loop
        if loop is None or loop.is_closed():  # asking costs a getpid() each time on Python 3.11
            loop = self._loop = asyncio.get_running_loop()
        self._queue.put((operation, loop, settled, linger))

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            store = self._open()
            store.migrate()
            self._unmoved = store.inboxed()  # what an earlier proxy left there is moved with the next
        except Exception as exc:  # whatever it is, ``start`` must not wait forever for this thread
            self._startup_error = exc if isinstance(exc, StoreError) else StoreError(f"metrics store: {exc!r}")
            self._ready.set()
            return
        self._ready.set()
        last = 0
        try:
            while True:
                try:
                    first = self._queue.get(timeout=MOVE_AFTER_SECONDS if self._unmoved else None)
                except Empty:  # quiet: index what waits in the inbox
                    self._move(store)
                    continue
                if first is None:
                    self._move(store)
                    return
                batch = [first]
                if last > 1:  # writes are arriving together: let the next few join this commit
                    time.sleep(COMMIT_DELAY_SECONDS)
                stopping = self._take(batch)
                if not stopping and len(batch) < LINGER_ROWS and any(item[3] for item in batch):
                    time.sleep(LINGER_SECONDS)
                    stopping = self._take(batch)
                last = len(batch)
                self._write(store, batch)
                if stopping:
                    self._move(store)
                    return
                if self._unmoved >= MOVE_ROWS or (
                    self._unmoved and time.monotonic() - self._unmoved_since >= MOVE_AFTER_SECONDS
                ):
                    self._move(store)
        finally:
            store.close()

    def _take(self, batch: list[_Item]) -> bool:
        """Add what is queued to batch (up to MAX_BATCH); True when stop was asked."""
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _move(self, store: Store) -> None:
        """Index the inbox's rows; on failure they stay there (still read) for the next try."""
        if not self._unmoved:
            return
        try:
            store.move_inbox()
            store.commit()
        except StoreError as exc:
            store.rollback()
            log.error("metrics store: could not index %d inboxed predictions (kept, retried later): %s",
                      self._unmoved, exc)  # fmt: skip
            self._unmoved_since = time.monotonic()
            return
        self._unmoved = 0
        self.moves += 1

    def _write(self, store: Store, batch: list[_Item]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        try:
            rows = [item[0] for item in batch if isinstance(item[0], PredictionRow)]
            if rows:  # one executemany for the batch's predictions, before what may refer to them
                store.insert_predictions(rows)  # type: ignore[arg-type]
            for operation, _loop, _future, _linger in batch:
                if isinstance(operation, PredictionRow):
                    results.append((None, None))
                    continue
                try:
                    results.append((operation(store), None))
                except _REFUSALS as exc:
                    results.append((None, exc))
            store.commit()
            if rows:
                if not self._unmoved:
                    self._unmoved_since = time.monotonic()
                self._unmoved += len(rows)
        except StoreError as exc:
            store.rollback()
            log.error("metrics store: %d writes refused: %s", len(batch), exc)
            results = [(None, exc)] * len(batch)
        except Exception as exc:  # a bug in an operation: fail the batch rather than the thread
            store.rollback()
            log.exception("metrics store: unexpected error in a batch of %d writes", len(batch))
            results = [(None, StoreError(f"metrics store: unexpected error: {exc}"))] * len(batch)
        self.batches += 1
        self.operations += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Settled, Any, Any]]] = {}
        for (_op, loop, settled, _linger), (result, error) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((settled, result, error))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits for these
                loop.call_soon_threadsafe(_settle_all, outcomes)


def _settle_all(outcomes: list[tuple[Settled, Any, BaseException | None]]) -> None:
    for settled, result, error in outcomes:
        try:
            settled(result, error)
        except Exception:  # one waiter's bug must not leave the others of the batch unanswered
            log.exception("metrics store: unexpected error handing back a write")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
