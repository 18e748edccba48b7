"""The prediction watchdog: a replica whose prediction runs past ``--prediction-timeout`` exits.

A prediction cannot be cancelled (it is arbitrary model code on the worker thread), so a model that
hangs would keep the replica busy forever; the proxy answers 504 at its request_timeout, but every
later request would find the replica busy. The watchdog is a daemon thread that looks at the worker
once in a while: when one prediction has run longer than the timeout, it logs one line and ends the
process with ``os._exit(EXIT_CODE)``, so the supervisor (supervisord, Docker's restart policy)
starts a fresh replica. ``os._exit`` because a graceful exit would wait for the stuck thread.
"""

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from .worker import PredictionWorker

log = logging.getLogger("cmlplan.replica")

EXIT_CODE = 70  # EX_SOFTWARE


class Watchdog:
    """Checks ``worker`` every ``interval`` s; ``exit`` is replaceable for tests."""

    def __init__(
        self,
        worker: PredictionWorker,
        timeout: float,
        *,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError("the prediction timeout must be positive")
        self.worker = worker
        self.timeout = timeout
        self.interval = min(1.0, max(0.05, timeout / 10))
        self._exit = exit
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmlplan-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Exit (and return True) if the running prediction is over time."""
        current = self.worker.current
        if current is None:
            return False
        label, started = current
        if self._clock() - started <= self.timeout:
            return False
        message = (
            f"prediction {label} ran longer than {self.timeout:g}s; "
            "exiting so the supervisor replaces this replica"
        )
        log.error(message)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        self._exit(EXIT_CODE)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.check():
                return
