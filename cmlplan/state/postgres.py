"""State kept in PostgreSQL, so a team and its CI jobs share one workspace's state.

Every write is compare-and-swap on the serial (``UPDATE ... WHERE serial = <the one read>``) in
one transaction, so a lost update is impossible even for a run that skipped the lock. A recorded
action touches its own resource rows only (O(1) in the state's size); whole-document writes
(``state push``, ``state rm``, a first write) replace the rows. Every serial goes to the history.
The DSN comes from the caller's environment and is masked in every message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from pydantic import ValidationError

from cmlplan import __version__
from cmlplan.state import pg_lock, pg_schema
from cmlplan.state.document import StateDelta, StateDocument, StateError
from cmlplan.state.dsn import DatabaseAddress
from cmlplan.state.lock import LockInfo

Connection = psycopg.Connection[tuple[Any, ...]]
_HEADER_FIELDS = ("format_version", "cmlplan_version", "workspace_id", "salt", "counters", "history")


class PostgresBackend:
    """A ``StateBackend`` for the state named ``workspace`` in the database at ``address``."""

    shared = True

    def __init__(self, address: DatabaseAddress, workspace: str) -> None:
        self.address = address
        self.workspace = workspace
        self._connection: Connection | None = None
        self._known: tuple[str, int] | None = None  # (lineage, serial) this backend last read or wrote

    def describe(self) -> str:
        return f"PostgreSQL state {self.workspace!r} at {self.address.shown}"

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> StateDocument | None:
        """The stored state (one consistent snapshot) or None when this workspace has none yet."""
        with self._transaction("reading", isolation=psycopg.IsolationLevel.REPEATABLE_READ) as connection:
            head = connection.execute(
                "SELECT lineage::text, serial, header FROM cmlplan_states WHERE workspace = %s", (self.workspace,)
            ).fetchone()
            if head is None:
                self._known = None
                return None
            resources = connection.execute(
                "SELECT address, body FROM cmlplan_resources WHERE workspace = %s", (self.workspace,)
            ).fetchall()
            builds: dict[str, list[Any]] = {}
            for model, body in connection.execute(
                "SELECT model, body FROM cmlplan_builds WHERE workspace = %s ORDER BY id", (self.workspace,)
            ):
                builds.setdefault(model, []).append(body)
        lineage, serial, header = head
        data = {key: header[key] for key in _HEADER_FIELDS if key in header}
        data.update(lineage=lineage, serial=serial, resources=dict(resources), builds=builds)
        try:
            doc = StateDocument.model_validate(data)
        except ValidationError as exc:
            raise StateError(f"{self.describe()} is invalid ({exc.error_count()} problems, first at {_loc(exc)})") from None
        self._known = (doc.lineage, doc.serial)
        return doc

    def history(self) -> list[tuple[int, str]]:
        """Every recorded serial of the current lineage with what it holds (``document`` or ``delta``)."""
        with self._transaction("reading the history of") as connection:
            rows = connection.execute(
                "SELECT h.serial, h.kind FROM cmlplan_history h JOIN cmlplan_states s USING (workspace, lineage)"
                " WHERE h.workspace = %s ORDER BY h.serial",
                (self.workspace,),
            ).fetchall()
        return [(int(serial), str(kind)) for serial, kind in rows]

    # -- writing -----------------------------------------------------------------------------

    def write(self, doc: StateDocument) -> StateDocument:
        """Store ``doc`` whole with the next serial (CAS on ``doc.serial``); returns the written copy."""
        written = doc.model_copy(deep=True, update={"serial": doc.serial + 1, "cmlplan_version": __version__})
        written.mark_saved()
        self._store(written, expected=doc.serial)
        return written

    def checkpoint(self, doc: StateDocument) -> None:
        """Make sure ``doc`` is stored at its own serial: recorded deltas already are, so usually nothing."""
        if self._known == (doc.lineage, doc.serial):
            return
        self._store(doc.model_copy(update={"cmlplan_version": __version__}), expected=None)

    def append_ready(self) -> bool:
        """Deltas can be recorded once this backend has read (or written) an existing state."""
        return self._known is not None

    def append(self, deltas: Sequence[StateDelta]) -> None:
        """Record ``deltas`` (the next serials) in one transaction touching only the rows they change."""
        if not deltas:
            return
        first, last = deltas[0], deltas[-1]
        with self._transaction("recording to", failed=f"the previous state is intact (serial {first.serial - 1})") as connection:
            changed_history: dict[str, Any] = {}
            for delta in deltas:  # a later delta's list for an address replaces an earlier one's
                changed_history.update({a: [e.model_dump(mode="json") for e in es] for a, es in delta.history.items()})
            row = connection.execute(
                "UPDATE cmlplan_states SET serial = %s,"
                " header = jsonb_set(header || %s::jsonb, '{history}', coalesce(header->'history', '{}'::jsonb) || %s::jsonb),"
                " updated_at = now()"
                " WHERE workspace = %s AND lineage = %s::uuid AND serial = %s RETURNING serial",
                (last.serial, json.dumps({"counters": last.counters, "cmlplan_version": __version__}),
                 json.dumps(changed_history), self.workspace, first.lineage, first.serial - 1),
            ).fetchone()
            if row is None:
                self._refuse_changed(connection, first.lineage, first.serial - 1)
            upserts: list[tuple[str, str, str]] = []
            deletes: list[tuple[str, str]] = []
            builds: list[tuple[str, str, str]] = []
            history: list[tuple[str, str, int, str]] = []
            for delta in deltas:
                for address, resource in delta.resources.items():
                    if resource is None:
                        deletes.append((self.workspace, address))
                    else:
                        upserts.append((self.workspace, address, resource.model_dump_json()))
                for model, records in delta.builds.items():
                    builds.extend((self.workspace, model, record.model_dump_json()) for record in records)
                history.append((self.workspace, delta.lineage, delta.serial, delta.to_json()))
            with connection.cursor() as cursor:
                if deletes:
                    cursor.executemany("DELETE FROM cmlplan_resources WHERE workspace = %s AND address = %s", deletes)
                if upserts:
                    cursor.executemany(
                        "INSERT INTO cmlplan_resources (workspace, address, body) VALUES (%s, %s, %s::jsonb)"
                        " ON CONFLICT (workspace, address) DO UPDATE SET body = excluded.body",
                        upserts,
                    )
                if builds:
                    cursor.executemany(
                        "INSERT INTO cmlplan_builds (workspace, model, body) VALUES (%s, %s, %s::jsonb)", builds
                    )
                cursor.executemany(
                    "INSERT INTO cmlplan_history (workspace, lineage, serial, kind, body)"
                    " VALUES (%s, %s::uuid, %s, 'delta', %s::jsonb)",
                    history,
                )
        self._known = (last.lineage, last.serial)

    def _store(self, doc: StateDocument, expected: int | None) -> None:
        """Replace the stored state with ``doc``; ``expected`` is the serial it must replace (CAS)."""
        header = {key: value for key, value in doc.model_dump(mode="json").items() if key in _HEADER_FIELDS}
        previous = f"serial {expected}" if expected else "no state"
        with self._transaction("writing", failed=f"the previous state is intact ({previous})") as connection:
            row = connection.execute(
                "SELECT lineage::text, serial FROM cmlplan_states WHERE workspace = %s FOR UPDATE", (self.workspace,)
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO cmlplan_states (workspace, lineage, serial, header) VALUES (%s, %s::uuid, %s, %s::jsonb)",
                    (self.workspace, doc.lineage, doc.serial, json.dumps(header)),
                )
            else:
                lineage, serial = row
                if lineage != doc.lineage:
                    raise StateError(
                        f"{self.describe()} belongs to another state (lineage {lineage}, this run has {doc.lineage}); "
                        "refusing to overwrite it"
                    )
                if (expected is not None and serial != expected) or (expected is None and serial >= doc.serial):
                    raise StateError(
                        f"{self.describe()} changed since it was read (serial {serial} in the database, "
                        f"{doc.serial if expected is None else expected} in this run); refusing to overwrite it, re-run the command"
                    )
                connection.execute(
                    "UPDATE cmlplan_states SET serial = %s, header = %s::jsonb, updated_at = now() WHERE workspace = %s",
                    (doc.serial, json.dumps(header), self.workspace),
                )
                connection.execute("DELETE FROM cmlplan_resources WHERE workspace = %s", (self.workspace,))
                connection.execute("DELETE FROM cmlplan_builds WHERE workspace = %s", (self.workspace,))
            with connection.cursor() as cursor:
                with cursor.copy("COPY cmlplan_resources (workspace, address, body) FROM STDIN") as copy:
                    for address, resource in doc.resources.items():
                        copy.write_row((self.workspace, address, resource.model_dump_json()))
                with cursor.copy("COPY cmlplan_builds (workspace, model, body) FROM STDIN") as copy:
                    for model, records in doc.builds.items():
                        for record in records:
                            copy.write_row((self.workspace, model, record.model_dump_json()))
            connection.execute(
                "INSERT INTO cmlplan_history (workspace, lineage, serial, kind, body) VALUES (%s, %s::uuid, %s, 'document', %s::jsonb)"
                " ON CONFLICT (workspace, lineage, serial) DO UPDATE SET kind = 'document', body = excluded.body",
                (self.workspace, doc.lineage, doc.serial, doc.to_json()),
            )
        self._known = (doc.lineage, doc.serial)

    def _refuse_changed(self, connection: Connection, lineage: str, serial: int) -> None:
        row = connection.execute(
            "SELECT lineage::text, serial FROM cmlplan_states WHERE workspace = %s", (self.workspace,)
        ).fetchone()
        if row is None:
            raise StateError(f"{self.describe()} does not exist any more; refusing to record into it")
        if row[0] != lineage:
            raise StateError(
                f"{self.describe()} belongs to another state now (lineage {row[0]}, this run has {lineage}); "
                "refusing to record into it"
            )
        raise StateError(
            f"{self.describe()} changed since it was read (serial {row[1]} in the database, {serial} in this run); "
            "refusing to overwrite it, re-run the command"
        )

    # -- locking -----------------------------------------------------------------------------

    def lock(self, info: LockInfo, wait: float = 0.0) -> pg_lock.PgLock:
        self._ready()
        return pg_lock.PgLock(self.address, self.workspace, self.describe(), info, wait)

    def force_unlock(self, lock_id: str) -> None:
        with self._transaction("unlocking") as connection:
            pg_lock.force_unlock(connection, self.workspace, self.describe(), lock_id)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- connections -------------------------------------------------------------------------

    def _ready(self) -> Connection:
        """The open connection, (re)connecting and migrating the schema when needed."""
        if self._connection is not None and not self._connection.closed and not self._connection.broken:
            return self._connection
        try:
            connection: Connection = psycopg.connect(self.address.dsn, connect_timeout=10)
            pg_schema.migrate(connection, self.describe())  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to {self.describe()}: {self.address.scrub(str(exc))}") from None
        self._connection = connection
        return connection

    @contextmanager
    def _transaction(
        self, doing: str, failed: str = "nothing was changed", isolation: psycopg.IsolationLevel | None = None
    ) -> Iterator[Connection]:
        connection = self._ready()
        try:
            if connection.isolation_level != isolation:
                connection.isolation_level = isolation
            with connection.transaction():
                yield connection
        except psycopg.Error as exc:
            with_reason = self.address.scrub(str(exc)) or type(exc).__name__
            raise StateError(f"{doing} {self.describe()} failed ({with_reason}); {failed}") from None


def _loc(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    return ".".join(str(part) for part in first["loc"]) or "top level"
