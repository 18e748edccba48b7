"""Real applies (local provider) with state in a real PostgreSQL: concurrency and a server that goes away.

- Two applies at once: exactly one proceeds; the other fails fast naming the holder; the history
  holds serials 1..6 once each (one writer; the deployment id is saved before anything starts).
- The server is stopped mid-apply (while the build runs): the apply stops with one clear line
  naming the database (password masked), nothing recorded before is lost, and once the server is
  back the next apply converges with no orphaned replica.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faultkit import EXAMPLES, FaultWorkspace, fault_workspace, kill_group
from pgserver import PASSWORD, PgServer, find_bindir

pytestmark = pytest.mark.slow

STATE = "state: {backend: postgres, dsn: \"${env:CMLPLAN_STATE_DSN}\", workspace: prod}"


def _postgres_workspace(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultWorkspace]:
    monkeypatch.setenv("CMLPLAN_STATE_DSN", dsn)
    with fault_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers") as ws:
        ws.state_dsn = dsn
        ws.replace_in_spec("provider: local", f"provider: local\n  {STATE}")
        yield ws


@pytest.fixture
def numbers_pg(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultWorkspace]:
    yield from _postgres_workspace(tmp_path, postgres_dsn, monkeypatch)


def _history(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute("SELECT serial, lineage::text FROM cmlplan_history ORDER BY serial").fetchall()
    return [(int(serial), lineage) for serial, lineage in rows]


def test_two_applies_at_once_exactly_one_writes(numbers_pg: FaultWorkspace, postgres_dsn: str) -> None:
    started = time.monotonic()
    runs = [numbers_pg.popen_cli("apply", "-auto-approve") for _ in range(2)]
    results: list[tuple[subprocess.Popen[str], str, float]] = []

    def finish(process: subprocess.Popen[str]) -> None:  # each timed on its own: the loser must not wait for the winner
        output, _ = process.communicate(timeout=240)
        results.append((process, output, time.monotonic() - started))

    waiters = [threading.Thread(target=finish, args=(process,)) for process in runs]
    try:
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(timeout=250)
    finally:
        for process in runs:
            kill_group(process)
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(r[0].returncode, r[1]) for r in results]
    winner, (loser, loser_output, loser_seconds) = winners[0][0], losers[0]
    assert loser.returncode == 1
    assert "PostgreSQL state 'prod' at postgresql://cmlplan:***@127.0.0.1" in loser_output, loser_output
    assert "is locked by " in loser_output and f"pid {winner.pid} (apply" in loser_output and "Creating" not in loser_output, loser_output
    assert PASSWORD not in loser_output
    assert loser_seconds < 20, f"the loser took {loser_seconds:.1f}s to give up"
    history = _history(postgres_dsn)
    assert [serial for serial, _ in history] == [1, 2, 3, 4, 5, 6], history
    assert len({lineage for _, lineage in history}) == 1
    state = numbers_pg.state()
    assert state is not None and state.serial == 6
    numbers_pg.assert_no_orphans()
    waited = numbers_pg.cli("apply", "-auto-approve", "-lock-timeout", "30")
    assert "No changes" in waited.stdout, waited.stdout


def test_server_stopped_mid_apply_stops_clearly_then_converges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed")
    server = PgServer(bindir)
    server.start()
    try:
        dsn = server.new_database()
        for ws in _postgres_workspace(tmp_path, dsn, monkeypatch):
            process, lines = ws.run_until_line(r"^build\.numbers/add#1: Creating", "apply", "-auto-approve")
            try:
                before = ws.state()
                assert before is not None and before.serial == 2
                server.stop("fast")
                ws.resume()
                output, _ = process.communicate(timeout=180)
            finally:
                kill_group(process)
            output = "\n".join(lines) + "\n" + output
            assert process.returncode == 1, output
            assert "Traceback" not in output and PASSWORD not in output, output
            assert "recording to PostgreSQL state 'prod' at postgresql://cmlplan:***@127.0.0.1" in output, output
            assert "the previous state is intact (serial 2)" in output, output
            assert "deployment.numbers/add: Creating" not in output, output
            server.restart()
            after = ws.state()
            assert after is not None and after.serial == 2 and sorted(after.resources) == sorted(before.resources)
            ws.apply()
            assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
            ws.assert_no_orphans()
            status, body = ws.call("model.numbers/add", {"a": 2, "b": 40})
            assert (status, body.get("response")) == (200, {"result": 42})
    finally:
        server.close()
