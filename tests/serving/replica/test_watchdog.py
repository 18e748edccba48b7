"""The replica's prediction watchdog: a prediction past --prediction-timeout ends the process (70)."""

import contextlib
import threading
import time

import pytest

from cmlplan.serving.replica.watchdog import EXIT_CODE, Watchdog
from cmlplan.serving.replica.worker import PredictionWorker


def predict(serving, proc, request, timeout=15.0):
    return serving.http("POST", proc.url + "/predict", request, {"Content-Type": "application/json"}, timeout)


def test_hanging_prediction_exits_the_replica_with_70(serving):
    replica = serving.replica("slow", "hang-1", extra=["--prediction-timeout", "1"])
    assert serving.http("GET", replica.url + "/healthz").status == 200
    caller = threading.Thread(target=lambda: _swallow(lambda: predict(serving, replica, {"sleep": 60}, 20)))
    caller.start()
    started = time.monotonic()
    try:
        assert replica.popen.wait(timeout=10) == EXIT_CODE
    finally:
        caller.join(timeout=20)
    assert 1.0 <= time.monotonic() - started < 6.0
    lines = [line for line in replica.output().splitlines() if "ran longer than" in line]
    assert len(lines) == 1, replica.output()
    assert "ran longer than 1s; exiting so the supervisor replaces this replica" in lines[0]


def test_predictions_under_the_timeout_keep_the_replica(serving):
    replica = serving.replica("slow", "ok-1", extra=["--prediction-timeout", "2"])
    for _ in range(3):
        assert predict(serving, replica, {"sleep": 0.5}).status == 200
    time.sleep(2.5)  # idle time never counts
    assert replica.popen.poll() is None
    assert serving.http("GET", replica.url + "/healthz").body["busy"] is False


def test_no_timeout_by_default(serving):
    replica = serving.replica("slow", "off-1")
    assert predict(serving, replica, {"sleep": 1.5}).status == 200
    assert replica.popen.poll() is None


def test_watchdog_checks_the_running_job_only():
    exits: list[int] = []
    now = [100.0]
    worker = PredictionWorker()
    dog = Watchdog(worker, 5.0, exit=exits.append, clock=lambda: now[0])
    assert dog.check() is False
    worker.current = ("abc", 96.0)
    assert dog.check() is False and exits == []
    worker.current = ("abc", 94.0)
    assert dog.check() is True and exits == [EXIT_CODE]
    with pytest.raises(ValueError):
        Watchdog(worker, 0)


def _swallow(call):
    with contextlib.suppress(OSError):  # the replica went away mid-request: expected
        call()
