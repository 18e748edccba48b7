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
from typing import TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], object], asyncio.AbstractEventLoop, "asyncio.Future[object]", str]


class PredictionWorker:
    """One background thread executing jobs in submission order.

    ``current`` is ``(label, monotonic start)`` of the job running now, or None: the watchdog reads it.
    """

    def __init__(self) -> None:
        self.current: tuple[str, float] | None = None
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._thread = threading.Thread(target=self._run_forever, name="cmlplan-predict", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[], T], label: str = "job") -> T:
        """Run job on the worker thread and wait for its result without blocking the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, loop, future, label))  # type: ignore[arg-type]
        return await future

    def _run_forever(self) -> None:
        while True:
            job, loop, future, label = self._jobs.get()
            self.current = (label, time.monotonic())
            try:
                result = job()
            except Exception as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            except BaseException as exc:  # SystemExit in a task would stop the event loop itself
                error = RuntimeError(f"job aborted: {type(exc).__name__}: {exc}")
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            finally:
                self.current = None


def _settle(future: "asyncio.Future[object]", result: object, error: BaseException | None) -> None:
    if future.done():  # the awaiting request was cancelled (shutdown timeout)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
