"""Runs predictions on one dedicated thread so the event loop keeps answering /healthz.

A daemon thread is used rather than a ThreadPoolExecutor on purpose: the executor's atexit hook
joins its threads, so a model stuck in a long computation would keep the process alive after
SIGTERM's graceful-shutdown window. A daemon thread dies with the process.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

Done = Callable[[Any, "BaseException | None"], None]
_Job = tuple[Callable[[], object], asyncio.AbstractEventLoop, Done, str]


class PredictionWorker:
    """One background thread executing jobs in submission order.

    ``current`` is ``(label, monotonic start)`` of the job running now, or None: the watchdog reads it.
    """

    def __init__(self) -> None:
        self.current: tuple[str, float] | None = None
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._thread = threading.Thread(target=self._run_forever, name="cmlplan-predict", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T], label: str, done: Callable[[T | None, BaseException | None], None]) -> None:
        """Run job on the worker thread; ``done(result, error)`` is then called on the calling loop.

        A callback rather than a future: a prediction costs no task or future on the loop.
        """
        self._jobs.put((job, asyncio.get_running_loop(), done, label))  # type: ignore[arg-type]

    def _run_forever(self) -> None:
        while True:
            job, loop, done, label = self._jobs.get()
            self.current = (label, time.monotonic())
            try:
                result = job()
            except Exception as exc:
                loop.call_soon_threadsafe(done, None, exc)
            except BaseException as exc:  # SystemExit in a task would stop the event loop itself
                loop.call_soon_threadsafe(done, None, RuntimeError(f"job aborted: {type(exc).__name__}: {exc}"))
            else:
                loop.call_soon_threadsafe(done, result, None)
            finally:
                self.current = None

