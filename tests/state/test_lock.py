"""Tests for the state lock file: exclusivity, the holder message, waiting, stale holders, force-unlock."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cmlplan.state import lock as lock_module
from cmlplan.state.document import StateError
from cmlplan.state.lock import FileLock, LockHeld, LockInfo, force_unlock, read_lock


def _holder(**changes: object) -> LockInfo:
    fields: dict[str, object] = {
        "id": "XYZ",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": "root",
        "operation": "apply",
        "created_at": datetime(2026, 11, 25, 18, 0, tzinfo=UTC),
        "cmlplan_version": "0.1.0",
    }
    return LockInfo(**(fields | changes))


def _plant(path: Path, info: LockInfo) -> None:
    path.write_text(info.model_dump_json())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_file_is_created_with_holder_fields_and_removed_on_exit(tmp_path: Path) -> None:
    path = tmp_path / ".cmlplan" / "state.lock"
    info = LockInfo.create("apply")
    with FileLock(path, info) as held:
        assert held == info
        stored = json.loads(path.read_text())
        assert stored["id"] == info.id and stored["pid"] == os.getpid()
        assert stored["host"] == socket.gethostname() and stored["operation"] == "apply"
        assert set(stored) == {"id", "pid", "host", "user", "operation", "created_at", "cmlplan_version"}
    assert not path.exists()


def test_lock_is_released_when_the_body_raises(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    with pytest.raises(RuntimeError), FileLock(path, LockInfo.create("apply")):
        raise RuntimeError("apply failed")
    assert not path.exists()


def test_held_lock_message_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    _plant(path, _holder())
    with pytest.raises(LockHeld) as info:
        FileLock(path, LockInfo.create("plan")).acquire()
    assert str(info.value) == (
        f"state is locked by root@{socket.gethostname()} pid {os.getpid()} "
        "(apply, since 2026-11-25T18:00:00Z, lock id XYZ); if that process is gone, run: cmlplan force-unlock XYZ"
    )
    assert info.value.holder.id == "XYZ"
    assert isinstance(info.value, StateError)
    assert read_lock(path) == _holder()  # untouched


def test_stale_holder_on_this_host_is_reported_but_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    pid = _dead_pid()
    _plant(path, _holder(pid=pid))
    with pytest.raises(
        LockHeld,
        match=rf"; the holder is gone \(no process {pid} on this host\), run: cmlplan force-unlock XYZ$",
    ):
        FileLock(path, LockInfo.create("apply")).acquire()
    assert read_lock(path) == _holder(pid=pid)


def test_holder_on_another_host_is_never_called_gone(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    _plant(path, _holder(pid=_dead_pid(), host="elsewhere.example"))
    with pytest.raises(LockHeld, match="if that process is gone") as info:
        FileLock(path, LockInfo.create("apply")).acquire()
    assert "holder is gone" not in str(info.value)


def test_wait_acquires_once_the_holder_releases(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    first = FileLock(path, LockInfo.create("apply"))
    first.acquire()
    timer = threading.Timer(0.2, first.release)
    timer.start()
    try:
        second = LockInfo.create("apply")
        with FileLock(path, second, wait=5.0, poll_interval=0.02):
            assert read_lock(path) == second
    finally:
        timer.join()


def test_wait_gives_up_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    _plant(path, _holder())
    start = time.monotonic()
    with pytest.raises(LockHeld, match=r"still locked after waiting 0\.3s; if that process is gone"):
        FileLock(path, LockInfo.create("apply"), wait=0.3, poll_interval=0.05).acquire()
    assert time.monotonic() - start >= 0.3


def test_force_unlock_with_the_wrong_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    _plant(path, _holder())
    with pytest.raises(
        StateError, match=r"^lock id ABC does not match the state lock .* lock id XYZ\); nothing was removed$"
    ):
        force_unlock(path, "ABC")
    assert path.exists()
    assert force_unlock(path, "XYZ") == _holder()
    assert not path.exists()
    with pytest.raises(StateError, match="state is not locked"):
        force_unlock(path, "XYZ")


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    mine = LockInfo.create("apply")
    with FileLock(path, mine):
        force_unlock(path, mine.id)
        theirs = LockInfo.create("apply")
        FileLock(path, theirs).acquire()
    assert read_lock(path) == theirs


def test_unreadable_lock_file_is_an_error_not_a_free_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_module, "_UNREADABLE_GRACE", 0.05)
    path = tmp_path / "state.lock"
    path.write_text("")
    with pytest.raises(
        StateError, match=rf"^state lock {re.escape(str(path))} is held but unreadable; .*delete"
    ):
        FileLock(path, LockInfo.create("apply")).acquire()
    assert path.read_text() == ""


def test_lock_waits_for_a_half_written_lock_file(tmp_path: Path) -> None:
    """A holder between O_EXCL create and write looks empty for a moment: that is held, not corrupt."""
    path = tmp_path / "state.lock"
    path.write_text("")
    holder = _holder()
    timer = threading.Timer(0.1, lambda: _plant(path, holder))
    timer.start()
    try:
        with pytest.raises(LockHeld, match="lock id XYZ"):
            FileLock(path, LockInfo.create("apply")).acquire()
    finally:
        timer.join()


def _race(
    path: str,
    start: multiprocessing.synchronize.Barrier,
    tried: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue,
) -> None:
    start.wait()
    lock = FileLock(Path(path), LockInfo.create("apply"))
    try:
        lock.acquire()
    except LockHeld:
        results.put("lost")
        tried.wait()
        return
    results.put("won")
    tried.wait()  # hold the lock until everyone has tried
    lock.release()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_racing_processes_exactly_one_wins(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    contenders = 8
    for round_number in range(3):
        path = tmp_path / f"round{round_number}" / "state.lock"
        start, tried = ctx.Barrier(contenders), ctx.Barrier(contenders)
        results: multiprocessing.Queue = ctx.Queue()
        processes = [
            ctx.Process(target=_race, args=(str(path), start, tried, results)) for _ in range(contenders)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        assert sorted(outcomes) == ["lost"] * (contenders - 1) + ["won"]
        assert not path.exists()
