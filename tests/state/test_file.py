"""Tests for the local state file: atomic writes, backups, refusing bad files, surviving failed writes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmlplan import __version__
from cmlplan.state import file as file_module
from cmlplan.state.backend import StateBackend
from cmlplan.state.document import ResourceState, StateDocument, StateError
from cmlplan.state.file import DEFAULT_STATE_PATH, FileBackend
from cmlplan.state.lock import LockHeld, LockInfo


@pytest.fixture
def backend(tmp_path: Path) -> FileBackend:
    return FileBackend(tmp_path / ".cmlplan" / "state.json")


def _written(backend: FileBackend, serials: int) -> StateDocument:
    """A state written ``serials`` times, with a resource that changes each time."""
    doc = StateDocument.new("ws-1")
    for number in range(serials):
        doc.set_resource(
            "project.iris", ResourceState(kind="project", provider="local", attributes={"n": number})
        )
        doc = backend.write(doc)
    return doc


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_file_backend_satisfies_the_protocol(backend: FileBackend) -> None:
    typed: StateBackend = backend
    assert typed.describe() == f"local state file {backend.path}"
    assert FileBackend().path == DEFAULT_STATE_PATH == Path(".cmlplan/state.json")
    assert backend.lock_path == backend.path.parent / "state.lock"
    assert backend.backup_path == backend.path.parent / "state.json.backup"


def test_read_of_a_missing_state_is_none(backend: FileBackend) -> None:
    assert backend.read() is None


def test_write_then_read_roundtrips_and_increments_serial(backend: FileBackend) -> None:
    doc = StateDocument.new("ws-1")
    doc.cmlplan_version = "0.0.1"
    written = backend.write(doc)
    assert doc.serial == 0 and doc.cmlplan_version == "0.0.1"  # the input is untouched
    assert written.serial == 1 and written.cmlplan_version == __version__
    assert backend.read() == written
    assert backend.path.read_text() == written.to_json()
    again = backend.write(written)
    assert again.serial == 2 and backend.read() == again
    assert _leftovers(backend.path.parent) == []


def test_backup_holds_the_previous_serial(backend: FileBackend) -> None:
    _written(backend, 1)
    assert not backend.backup_path.exists()  # nothing to back up on the first write
    for serial in range(2, 5):
        doc = backend.read()
        assert doc is not None
        backend.write(doc)
        backup = StateDocument.from_json(backend.backup_path.read_bytes(), "backup")
        current = StateDocument.from_json(backend.path.read_bytes(), "state")
        assert (backup.serial, current.serial) == (serial - 1, serial)


def test_state_file_is_private(backend: FileBackend) -> None:
    _written(backend, 2)
    assert backend.path.stat().st_mode & 0o077 == 0
    assert backend.backup_path.stat().st_mode & 0o077 == 0


def test_corrupt_state_is_refused_naming_the_file_and_backup_and_left_alone(backend: FileBackend) -> None:
    doc = _written(backend, 2)
    corrupt = backend.path.read_bytes()[:-40]  # as if truncated by a crash of some other tool
    backend.path.write_bytes(corrupt)
    backup_before = backend.backup_path.read_bytes()
    with pytest.raises(StateError) as info:
        backend.read()
    message = str(info.value)
    assert message.startswith(f"state file {backend.path} is not valid JSON (line ")
    assert message.endswith(f"; nothing was changed, the previous state is in {backend.backup_path}")
    assert "\n" not in message
    with pytest.raises(
        StateError, match=f"refusing to overwrite it, the previous state is in {backend.backup_path}"
    ):
        backend.write(doc)
    assert backend.path.read_bytes() == corrupt
    assert backend.backup_path.read_bytes() == backup_before


def test_corrupt_state_without_backup_says_so(backend: FileBackend) -> None:
    backend.path.parent.mkdir(parents=True)
    backend.path.write_text("{}")
    with pytest.raises(
        StateError, match=f"is invalid: .*; nothing was changed, no backup exists at {backend.backup_path}$"
    ):
        backend.read()


def test_future_format_is_refused_and_not_overwritten(backend: FileBackend) -> None:
    doc = _written(backend, 1)
    future = json.loads(backend.path.read_text()) | {"format_version": 2}
    backend.path.write_text(json.dumps(future))
    with pytest.raises(StateError) as info:
        backend.read()
    assert str(info.value) == (
        f"state file {backend.path} was written by a newer cmlplan (format 2); this cmlplan reads format 1; "
        f"nothing was changed, no backup exists at {backend.backup_path}"
    )
    with pytest.raises(StateError, match="newer cmlplan"):
        backend.write(doc)
    assert json.loads(backend.path.read_text()) == future


def test_missing_state_with_a_backup_is_not_treated_as_empty(backend: FileBackend) -> None:
    _written(backend, 2)
    backend.path.unlink()
    with pytest.raises(
        StateError, match=f"state file {backend.path} is missing but its backup .* exists; restore it"
    ):
        backend.read()


def test_write_refuses_another_lineage_or_a_stale_serial(backend: FileBackend) -> None:
    written = _written(backend, 1)
    with pytest.raises(StateError, match="belongs to another state"):
        backend.write(StateDocument.new("ws-1"))
    backend.write(written)  # serial 2 on disk
    with pytest.raises(StateError, match=r"changed since it was read \(serial 2 on disk, 1 in this run\)"):
        backend.write(written)


def test_unreadable_state_path_is_a_state_error(backend: FileBackend) -> None:
    backend.path.mkdir(parents=True)
    with pytest.raises(StateError, match=f"cannot read state file {backend.path}: "):
        backend.read()


@pytest.mark.parametrize("target", ["replace", "fsync", "write"])
def test_failed_write_keeps_the_previous_state(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    doc = _written(backend, 2)
    before = backend.path.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if target == "write":
        monkeypatch.setattr(file_module.os, "fdopen", _failing_fdopen)
    else:
        monkeypatch.setattr(file_module.os, target, disk_full)
    with pytest.raises(StateError) as info:
        backend.write(doc)
    assert str(info.value) == (
        f"writing state file {backend.path} failed (No space left on device); "
        f"the previous state is intact at {backend.path}"
    )
    monkeypatch.undo()
    assert backend.path.read_bytes() == before
    assert backend.read() == doc
    assert _leftovers(backend.path.parent) == []


class _FullDisk:
    """A file object whose writes fail like a full disk, after the real fd was opened."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _failing_fdopen(fd: int, *args: object, **kwargs: object) -> _FullDisk:
    return _FullDisk(fd)


def test_failed_first_write_says_no_state_existed(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_module.os, "replace", disk_full)
    with pytest.raises(
        StateError,
        match=f"failed \\(No space left on device\\); no state existed at {backend.path} and none was written$",
    ):
        backend.write(StateDocument.new("ws"))
    monkeypatch.undo()
    assert not backend.path.exists()


def test_directory_sync_failure_reports_where_the_previous_state_is(
    backend: FileBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _written(backend, 1)

    def broken(directory: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(file_module, "_fsync_dir", broken)
    with pytest.raises(
        StateError,
        match=f"may not be on disk \\(Input/output error\\); the previous state is in {backend.backup_path}$",
    ):
        backend.write(doc)


@pytest.fixture
def immutable_dir(backend: FileBackend) -> Iterator[Path]:
    """A directory even root cannot write into: ``chattr +i`` (skips where unsupported)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    _written(backend, 1)
    directory = backend.path.parent
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem or user cannot set the immutable attribute")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_write_into_a_read_only_directory_fails_with_intact_state(
    backend: FileBackend, immutable_dir: Path
) -> None:
    doc = backend.read()
    assert doc is not None
    before = backend.path.read_bytes()
    with pytest.raises(
        StateError,
        match=f"^writing state file {backend.path} failed \\(.+\\); the previous state is intact at {backend.path}$",
    ):
        backend.write(doc)
    assert backend.path.read_bytes() == before
    assert _leftovers(immutable_dir) == []


def _write_under_size_limit(path: str, limit: int, results: multiprocessing.Queue) -> None:
    """In a child: cap file size like a nearly full disk, then try to write a bigger state."""
    backend = FileBackend(path)
    doc = backend.read()
    assert doc is not None
    doc.set_resource(
        "model.big", ResourceState(kind="model", provider="local", attributes={"blob": "x" * (4 * limit)})
    )
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        backend.write(doc)
    except StateError as exc:
        results.put(str(exc))
    else:
        results.put("written")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_write_that_hits_a_real_size_limit_keeps_the_previous_state(backend: FileBackend) -> None:
    _written(backend, 2)
    before = backend.path.read_bytes()
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    child = ctx.Process(target=_write_under_size_limit, args=(str(backend.path), len(before) + 512, results))
    child.start()
    message = results.get(timeout=30)
    child.join(timeout=30)
    assert message == (
        f"writing state file {backend.path} failed (File too large); the previous state is intact at {backend.path}"
    )
    assert backend.path.read_bytes() == before
    assert _leftovers(backend.path.parent) == []


def test_lock_and_force_unlock_through_the_backend(backend: FileBackend) -> None:
    info = LockInfo.create("apply")
    with backend.lock(info):
        assert json.loads(backend.lock_path.read_text())["id"] == info.id
        with pytest.raises(LockHeld, match=f"lock id {info.id}"):
            backend.lock(LockInfo.create("plan")).__enter__()
        with pytest.raises(StateError, match="does not match"):
            backend.force_unlock("wrong")
        backend.force_unlock(info.id)
        assert not backend.lock_path.exists()
    assert not backend.lock_path.exists()
