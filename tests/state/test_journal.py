"""The file backend's journal: actions recorded as appended lines, folded on load and at checkpoints."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cmlplan.state import journal
from cmlplan.state.document import BuildRecord, ResourceState, StateDocument, StateError
from cmlplan.state.file import FileBackend
from cmlplan.state.recorder import StateRecorder


def _resource(n: int) -> ResourceState:
    return ResourceState(kind="project", provider="local", attributes={"n": n})


def _started(tmp_path: Path) -> tuple[FileBackend, StateDocument]:
    backend = FileBackend(tmp_path / "state.json")
    doc = StateDocument.new("ws")
    doc.set_resource("project.base", _resource(0))
    doc = backend.write(doc)
    assert backend.read() == doc
    return backend, doc


def test_appended_deltas_fold_on_read_and_leave_the_document_untouched(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    before = backend.path.read_bytes()
    assert backend.append_ready()
    doc.set_resource("project.a", _resource(1))
    doc.add_build("model.a/m", BuildRecord(number=1, hash="h"))
    doc.next_id("deployment")
    first = doc.take_delta()
    doc.remove_resource("project.base")
    second = doc.take_delta()
    backend.append([first, second])
    assert backend.path.read_bytes() == before, "appending must not rewrite the document"
    loaded = FileBackend(backend.path).read()
    assert loaded == doc and loaded.serial == 3 and sorted(loaded.resources) == ["project.a"]
    assert loaded.builds["model.a/m"][0].hash == "h" and loaded.counters == {"deployment": 2}


def test_each_batch_starts_on_a_fresh_block(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    for n in range(3):
        doc.set_resource(f"project.p{n}", _resource(n))
        backend.append([doc.take_delta()])
    raw = backend.journal_path.read_bytes()
    starts = [i for i in range(0, len(raw), journal.BLOCK) if raw[i : i + 1] not in (b"\0", b"")]
    assert starts == [0, journal.BLOCK, 2 * journal.BLOCK]


def test_a_torn_last_line_is_ignored_but_damage_before_more_entries_is_refused(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    doc.set_resource("project.a", _resource(1))
    backend.append([doc.take_delta()])
    intact = backend.journal_path.read_bytes()
    with open(backend.journal_path, "ab") as handle:
        handle.write(b"0badc0de {\"lineage\": \"tor")
    assert FileBackend(backend.path).read().serial == 2
    damaged = bytearray(intact)
    damaged[12] ^= 0x01
    backend.journal_path.write_bytes(bytes(damaged) + b"\0" * 100 + intact)
    with pytest.raises(StateError, match=r"state journal .*state.json.journal is damaged at byte 0 and more entries follow"):
        FileBackend(backend.path).read()


def test_a_journal_without_its_document_is_an_error_naming_both(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    doc.set_resource("project.a", _resource(1))
    backend.append([doc.take_delta()])
    backend.path.unlink()
    backend.backup_path.unlink(missing_ok=True)
    with pytest.raises(StateError, match="state file .* is missing but its journal .* exists"):
        FileBackend(backend.path).read()


def test_append_refuses_when_another_run_appended_meanwhile(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    other = FileBackend(backend.path)
    theirs = other.read()
    assert theirs is not None
    theirs.set_resource("project.theirs", _resource(9))
    other.append([theirs.take_delta()])
    doc.set_resource("project.mine", _resource(1))
    with pytest.raises(StateError, match="changed since it was read"):
        backend.append([doc.take_delta()])
    assert "project.mine" not in FileBackend(backend.path).read().resources


def test_checkpoint_folds_the_journal_at_the_same_serial(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    doc.set_resource("project.a", _resource(1))
    backend.append([doc.take_delta()])
    backend.checkpoint(doc)
    assert not backend.journal_path.exists()
    assert StateDocument.from_json(backend.path.read_bytes(), "x").serial == doc.serial == 2


def test_recorder_batches_concurrent_saves_into_one_append(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)
    calls: list[int] = []
    append = backend.append

    def counting(deltas):  # type: ignore[no-untyped-def]
        calls.append(len(deltas))
        time.sleep(0.05)
        append(deltas)

    backend.append = counting  # type: ignore[method-assign]

    async def go() -> None:
        recorder = StateRecorder(backend)
        waits = []
        for n in range(20):
            doc.set_resource(f"project.p{n}", _resource(n))
            waits.append(recorder.save(doc))
            if n == 0:
                await asyncio.sleep(0.01)  # the first batch is in flight while the rest arrive
        await asyncio.gather(*waits)
        assert FileBackend(backend.path).read() == doc
        await recorder.close(doc)

    asyncio.run(go())
    assert sum(calls) == 20 and len(calls) == 2, calls
    assert not backend.journal_path.exists() and FileBackend(backend.path).read() == doc


def test_recorder_writes_the_whole_document_first_when_there_is_no_state(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "state.json")
    doc = StateDocument.new("ws")

    async def go() -> None:
        recorder = StateRecorder(backend)
        doc.set_resource("project.a", _resource(1))
        await recorder.save(doc)
        assert backend.path.exists() and not backend.journal_path.exists()
        doc.set_resource("project.b", _resource(2))
        await recorder.save(doc)
        assert backend.journal_path.exists()
        assert FileBackend(backend.path).read().serial == 2

    asyncio.run(go())


def test_a_failed_append_fails_every_later_save_and_keeps_the_journal_whole(tmp_path: Path) -> None:
    backend, doc = _started(tmp_path)

    def failing(_deltas):  # type: ignore[no-untyped-def]
        raise StateError("writing state file x failed (No space left on device); the previous state is intact")

    async def go() -> None:
        recorder = StateRecorder(backend)
        doc.set_resource("project.a", _resource(1))
        await recorder.save(doc)
        backend.append = failing  # type: ignore[method-assign]
        doc.set_resource("project.b", _resource(2))
        with pytest.raises(StateError, match="No space left"):
            await recorder.save(doc)
        doc.set_resource("project.c", _resource(3))
        with pytest.raises(StateError, match="an earlier state write failed"):
            await recorder.save(doc)
        await recorder.close(doc)

    asyncio.run(go())
    loaded = FileBackend(backend.path).read()
    assert sorted(loaded.resources) == ["project.a", "project.base"] and loaded.serial == 2


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from cmlplan.state.document import ResourceState, StateDocument
    from cmlplan.state.file import FileBackend
    from cmlplan.state.recorder import StateRecorder

    backend = FileBackend(sys.argv[1])
    doc = backend.read() or StateDocument.new("ws")

    async def go():
        recorder = StateRecorder(backend)
        n = 0
        while True:
            waits = []
            for _ in range(1 + n % 7):
                n += 1
                doc.set_resource(f"project.p{n % 50}", ResourceState(kind="project", provider="local", attributes={"n": n, "pad": "x" * (n % 900)}))
                waits.append(recorder.save(doc))
            await asyncio.gather(*waits)
            print(doc.serial, flush=True)
            if n % 97 == 0:
                await recorder.close(doc)
                recorder = StateRecorder(backend)

    asyncio.run(go())
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.011, 0.037, 0.15])
def test_kill_9_while_recording_leaves_a_state_that_loads_with_every_confirmed_serial(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "state.json"
    seen: list[int] = []
    for _round in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        first = process.stdout.readline()  # it is recording now
        time.sleep(delay)
        confirmed = 0
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        lines = (first + output).split()
        if lines:
            confirmed = int(lines[-1])
        loaded = FileBackend(path).read()
        if loaded is None:
            assert confirmed == 0
            continue
        assert loaded.serial >= confirmed
        assert all(r.attributes["n"] <= loaded.serial * 7 for r in loaded.resources.values())
        assert len(loaded.resources) <= 50
        seen.append(loaded.serial)
    assert seen and seen == sorted(seen) and seen[-1] > 0, seen
