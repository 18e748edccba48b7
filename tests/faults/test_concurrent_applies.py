"""Two applies at once on one workspace: the state lock lets exactly one proceed.

The loser either fails fast naming the holder and ``cmlplan force-unlock <id>``, or (with
``-lock-timeout``) waits and runs after. Meanwhile a watcher reads state.json every 20 ms: the
serials it sees only grow, one lineage, and the final serial is exactly the winner's writes (the
loser wrote nothing).
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from faultkit import FaultWorkspace, kill_group

pytestmark = pytest.mark.slow

FIRST_APPLY_WRITES = 6  # project, model, build, deployment id, deployment, proxy: one state write each


class SerialWatcher:
    """Reads the state's (lineage, serial) in a thread until stopped (at most ``limit`` seconds)."""

    def __init__(self, ws: FaultWorkspace, limit: float = 300.0) -> None:
        self.ws = ws
        self.limit = limit
        self.seen: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SerialWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                state = self.ws.state()
            except Exception as exc:  # noqa: BLE001 - a torn read is exactly what we look for
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if state is not None and (not self.seen or self.seen[-1] != (state.lineage, state.serial)):
                    self.seen.append((state.lineage, state.serial))
            self._stop.wait(0.02)

    def check(self, final_serial: int) -> None:
        assert not self.errors, self.errors
        assert len({lineage for lineage, _ in self.seen}) == 1, self.seen
        serials = [serial for _, serial in self.seen]
        assert serials == sorted(set(serials)), f"serials not strictly increasing: {serials}"
        assert serials[-1] == final_serial, serials


def test_two_applies_at_once_exactly_one_proceeds(numbers: FaultWorkspace) -> None:
    with SerialWatcher(numbers) as watcher:
        runs = [numbers.popen_cli("apply", "-auto-approve") for _ in range(2)]
        finished: dict[int, tuple[str, float]] = {}

        def wait(process: subprocess.Popen[str]) -> None:
            output, _ = process.communicate(timeout=240)
            finished[process.pid] = (output, time.monotonic())

        waiters = [threading.Thread(target=wait, args=(process,)) for process in runs]
        try:
            for waiter in waiters:
                waiter.start()
            for waiter in waiters:
                waiter.join(timeout=300)
            results = [(process, *finished[process.pid]) for process in runs]
        finally:
            for process in runs:
                kill_group(process)
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(r[0].returncode, r[1]) for r in results]
    (winner, _, winner_done), (loser, loser_output, loser_done) = winners[0], losers[0]
    assert loser.returncode == 1
    assert "state is locked by" in loser_output and f"pid {winner.pid} (apply" in loser_output, loser_output
    assert "cmlplan force-unlock " in loser_output and "Creating" not in loser_output, loser_output
    assert loser_done < winner_done, "the loser waited for the winner instead of giving up at once"
    watcher.check(FIRST_APPLY_WRITES)
    assert not numbers.lock_path.exists()
    numbers.assert_no_orphans()


def test_second_apply_fails_fast_or_waits_with_lock_timeout(numbers: FaultWorkspace) -> None:
    with SerialWatcher(numbers) as watcher:
        first, _lines = numbers.run_until_line(r"^build\.numbers/add#1: Creating", "apply", "-auto-approve")
        try:
            holder_id = __import__("json").loads(numbers.lock_path.read_text())["id"]
            refused = numbers.cli("apply", "-auto-approve", check=False, timeout=60)
            message = refused.stdout + refused.stderr
            assert refused.returncode == 1 and f"pid {first.pid}" in message, message
            assert f"cmlplan force-unlock {holder_id}" in message, message
            assert numbers.state().serial == 2  # the refused run wrote nothing

            waiting = numbers.popen_cli("apply", "-auto-approve", "-lock-timeout", "120")
            try:
                time.sleep(1.5)
                assert waiting.poll() is None, "the waiting apply did not wait for the lock"
                numbers.resume()
                first_output, _ = first.communicate(timeout=180)
                assert first.returncode == 0, first_output
                waiting_output, _ = waiting.communicate(timeout=180)
                assert waiting.returncode == 0, waiting_output
                assert "No changes" in waiting_output, waiting_output
            finally:
                kill_group(waiting)
        finally:
            kill_group(first)
    watcher.check(FIRST_APPLY_WRITES)
    assert not numbers.lock_path.exists()
    numbers.assert_no_orphans()
