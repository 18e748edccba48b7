"""The PostgreSQL backend against a real server: rows, history, CAS, the lock, migrations, masking."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import psycopg
import pytest

from cmlplan.specs.workspace import StateSettings
from cmlplan.state.document import BuildRecord, ResourceState, StateDocument, StateError
from cmlplan.state.dsn import DatabaseAddress
from cmlplan.state.lock import LockInfo
from cmlplan.state.open import open_backend
from cmlplan.state.pg_lock import PgLockHeld
from cmlplan.state.postgres import PostgresBackend
from cmlplan.state.recorder import StateRecorder


def _backend(dsn: str, workspace: str = "prod") -> PostgresBackend:
    return PostgresBackend(DatabaseAddress.parse(dsn, "test dsn"), workspace)


def _resource(n: int) -> ResourceState:
    return ResourceState(kind="project", provider="local", attributes={"n": n})


def _started(dsn: str) -> tuple[PostgresBackend, StateDocument]:
    backend = _backend(dsn)
    assert backend.read() is None
    doc = StateDocument.new("prod")
    doc.set_resource("project.base", _resource(0))
    return backend, backend.write(doc)


def test_write_read_roundtrip_and_every_serial_in_the_history(postgres_dsn: str) -> None:
    backend, doc = _started(postgres_dsn)
    doc.set_resource("project.a", _resource(1))
    doc.add_build("model.a/m", BuildRecord(number=1, hash="h1"))
    doc.next_id("deployment")
    first = doc.take_delta()
    doc.remove_resource("project.base")
    doc.add_build("model.a/m", BuildRecord(number=2, hash="h2"))
    backend.append([first, doc.take_delta()])
    fresh = _backend(postgres_dsn).read()
    assert fresh == doc and fresh.serial == 3
    assert [b.number for b in fresh.builds["model.a/m"]] == [1, 2] and fresh.counters == {"deployment": 2}
    doc = backend.write(doc)
    assert backend.history() == [(1, "document"), (2, "delta"), (3, "delta"), (4, "document")]
    assert _backend(postgres_dsn, "other").read() is None, "workspaces are separate states"


def test_a_recorded_action_touches_only_its_own_rows(postgres_dsn: str) -> None:
    backend, doc = _started(postgres_dsn)
    for n in range(50):
        doc.set_resource(f"project.p{n}", _resource(n))
    doc = backend.write(doc)
    query = "SELECT address, xmin::text FROM cmlplan_resources"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        before = dict(connection.execute(query).fetchall())
        doc.set_resource("project.p7", _resource(700))
        backend.append([doc.take_delta()])
        after = dict(connection.execute(query).fetchall())
    assert sorted(a for a in after if after[a] != before.get(a)) == ["project.p7"], "only the changed row is rewritten"
    assert _backend(postgres_dsn).read().resources["project.p7"].attributes == {"n": 700}


def test_compare_and_swap_refuses_a_lost_update_even_without_the_lock(postgres_dsn: str) -> None:
    backend, _doc = _started(postgres_dsn)
    alice, bob = _backend(postgres_dsn), _backend(postgres_dsn)
    theirs, mine, stale = alice.read(), bob.read(), _backend(postgres_dsn).read()
    theirs.set_resource("project.alice", _resource(1))
    alice.append([theirs.take_delta()])
    mine.set_resource("project.bob", _resource(2))
    with pytest.raises(StateError, match=r"changed since it was read \(serial 2 in the database, 1 in this run\)"):
        bob.append([mine.take_delta()])
    with pytest.raises(StateError, match=r"changed since it was read \(serial 2 in the database, 1 in this run\)"):
        _backend(postgres_dsn).write(stale)
    stored = _backend(postgres_dsn).read()
    assert sorted(stored.resources) == ["project.alice", "project.base"] and stored.serial == 2


def test_another_lineage_is_never_overwritten(postgres_dsn: str) -> None:
    backend, _doc = _started(postgres_dsn)
    stranger = StateDocument.new("prod")
    with pytest.raises(StateError, match="belongs to another state"):
        _backend(postgres_dsn).write(stranger)


def test_the_lock_refuses_naming_the_holder_and_a_waiter_gets_it_after_release(postgres_dsn: str) -> None:
    backend = _backend(postgres_dsn)
    holder = LockInfo.create("apply")
    with backend.lock(holder):
        with pytest.raises(PgLockHeld) as refused:
            _backend(postgres_dsn).lock(LockInfo.create("apply")).acquire()
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and f"cmlplan force-unlock {holder.id}" in message
        assert "cmlplan-test-password" not in message and "***" in message
    with _backend(postgres_dsn).lock(LockInfo.create("plan"), wait=5) as second:
        assert second.operation == "plan"


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from cmlplan.state.dsn import DatabaseAddress
    from cmlplan.state.lock import LockInfo
    from cmlplan.state.postgres import PostgresBackend
    backend = PostgresBackend(DatabaseAddress.parse(sys.argv[1], "dsn"), "prod")
    with backend.lock(LockInfo.create("apply")):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_a_holder_killed_with_9_frees_the_lock_with_its_connection(postgres_dsn: str) -> None:
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, postgres_dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        with pytest.raises(PgLockHeld, match=f"pid {process.pid}"):
            _backend(postgres_dsn).lock(LockInfo.create("apply")).acquire()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        with _backend(postgres_dsn).lock(LockInfo.create("apply"), wait=10) as info:
            assert info.pid == os.getpid()
    finally:
        process.kill()
        process.wait()


def test_force_unlock_ends_a_hung_holder_and_needs_its_id(postgres_dsn: str) -> None:
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, postgres_dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        backend = _backend(postgres_dsn)
        with pytest.raises(PgLockHeld) as refused:
            backend.lock(LockInfo.create("apply")).acquire()
        assert refused.value.holder is not None
        with pytest.raises(StateError, match="does not match the lock"):
            backend.force_unlock("not-the-id")
        backend.force_unlock(refused.value.holder.id)
        with backend.lock(LockInfo.create("apply"), wait=5):
            pass
    finally:
        process.kill()
        process.wait()


def test_migrations_record_the_version_and_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    _started(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        assert connection.execute("SELECT max(version) FROM cmlplan_schema").fetchone() == (1,)
        connection.execute("INSERT INTO cmlplan_schema (version) VALUES (99)")
    with pytest.raises(StateError, match="schema version 99, newer than this cmlplan knows"):
        _backend(postgres_dsn).read()


def test_concurrent_first_connections_migrate_once(postgres_dsn: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        from cmlplan.state.dsn import DatabaseAddress
        from cmlplan.state.postgres import PostgresBackend
        PostgresBackend(DatabaseAddress.parse(sys.argv[1], "dsn"), "prod").read()
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, postgres_dsn], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors


def test_the_dsn_is_masked_in_every_message(postgres_server, postgres_dsn: str) -> None:  # type: ignore[no-untyped-def]
    wrong = postgres_dsn.replace("cmlplan-test-password", "wrong-secret-pw")
    backend = _backend(wrong)
    assert "wrong-secret-pw" not in backend.describe() and ":***@" in backend.describe()
    with pytest.raises(StateError) as failed:
        backend.read()
    assert "wrong-secret-pw" not in str(failed.value) and "password authentication failed" in str(failed.value)
    with pytest.raises(StateError, match="environment variable STATE_DSN is not a valid PostgreSQL connection string"):
        DatabaseAddress.parse("host=x password='unterminated", "environment variable STATE_DSN")


def test_open_backend_reads_the_dsn_from_the_environment_only(postgres_dsn: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = StateSettings(backend="postgres", dsn="${env:CMLPLAN_STATE_DSN}", workspace="prod")
    backend = open_backend(settings, tmp_path, {"CMLPLAN_STATE_DSN": postgres_dsn}, "ws")
    assert isinstance(backend, PostgresBackend) and backend.workspace == "prod"
    assert open_backend(settings.model_copy(update={"workspace": None}), tmp_path, {"CMLPLAN_STATE_DSN": postgres_dsn}, "ws").workspace == "ws"  # type: ignore[union-attr]
    with pytest.raises(StateError, match=r"environment variable CMLPLAN_STATE_DSN is not set"):
        open_backend(settings, tmp_path, {}, "ws")
    with pytest.raises(ValueError, match="dsn must be an"):
        StateSettings(backend="postgres", dsn=postgres_dsn)


def test_recorder_groups_actions_into_few_transactions(postgres_dsn: str) -> None:
    backend, doc = _started(postgres_dsn)
    sizes: list[int] = []
    append = backend.append

    def counting(deltas):  # type: ignore[no-untyped-def]
        sizes.append(len(deltas))
        append(deltas)

    backend.append = counting  # type: ignore[method-assign]

    async def go() -> None:
        recorder = StateRecorder(backend)
        waits = []
        for n in range(200):
            doc.set_resource(f"project.p{n}", _resource(n))
            waits.append(recorder.save(doc))
            await asyncio.sleep(0)
        await asyncio.gather(*waits)
        await recorder.close(doc)

    asyncio.run(go())
    assert sum(sizes) == 200 and len(sizes) < 200, sizes
    assert _backend(postgres_dsn).read() == doc
