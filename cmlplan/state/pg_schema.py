"""The PostgreSQL state tables, created and upgraded by numbered migrations.

Each migration runs once, in order, inside one transaction holding an advisory lock, so two
cmlplans connecting to a fresh database at once never both create the tables. A database migrated
by a newer cmlplan is refused rather than misread.
"""

from __future__ import annotations

import psycopg

from cmlplan.state.document import StateError

# One workspace's state: a header row (lineage, serial, salt, counters), one row per resource and
# per build (so recording an action touches its own rows only), and every serial in the history
# (a whole document for full writes, a delta for recorded actions). The lock row names the holder;
# the holder's session-level advisory lock is what really excludes, and dies with its connection.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cmlplan_states (
        workspace text PRIMARY KEY,
        lineage uuid NOT NULL,
        serial bigint NOT NULL CHECK (serial >= 0),
        header jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE cmlplan_resources (
        workspace text NOT NULL REFERENCES cmlplan_states ON DELETE CASCADE,
        address text NOT NULL,
        body jsonb NOT NULL,
        PRIMARY KEY (workspace, address)
    );
    CREATE TABLE cmlplan_builds (
        id bigserial PRIMARY KEY,
        workspace text NOT NULL REFERENCES cmlplan_states ON DELETE CASCADE,
        model text NOT NULL,
        body jsonb NOT NULL
    );
    CREATE INDEX cmlplan_builds_workspace ON cmlplan_builds (workspace, model, id);
    CREATE TABLE cmlplan_history (
        workspace text NOT NULL,
        lineage uuid NOT NULL,
        serial bigint NOT NULL,
        kind text NOT NULL CHECK (kind IN ('document', 'delta')),
        body jsonb NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workspace, lineage, serial)
    );
    CREATE TABLE cmlplan_locks (
        workspace text PRIMARY KEY,
        lock_id text NOT NULL,
        info jsonb NOT NULL,
        backend_pid integer NOT NULL,
        locked_at timestamptz NOT NULL DEFAULT now()
    );
    """,
)

_MIGRATION_LOCK = 0x636D6C70  # "cmlp": the advisory lock key migrations take


def migrate(connection: psycopg.Connection[object], where: str) -> int:
    """Bring the schema to the newest version; returns it. ``where`` names the database in errors."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS cmlplan_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = connection.execute("SELECT coalesce(max(version), 0) FROM cmlplan_schema").fetchone()
        current = int(row[0]) if row else 0  # type: ignore[index]
        if current > len(MIGRATIONS):
            raise StateError(
                f"{where} has state schema version {current}, newer than this cmlplan knows ({len(MIGRATIONS)}); "
                "upgrade cmlplan"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            connection.execute(MIGRATIONS[version - 1])  # type: ignore[arg-type]
            connection.execute("INSERT INTO cmlplan_schema (version) VALUES (%s)", (version,))
    return len(MIGRATIONS)
