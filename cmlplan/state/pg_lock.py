"""The PostgreSQL state lock: a session advisory lock that excludes, and a row that names the holder.

The advisory lock belongs to the holder's database session, so a holder killed with -9 (or a
lost machine) releases it when its connection closes; the row it leaves behind is stale and is
replaced by the next holder. A refusal reads the row to name who holds the lock.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType

import psycopg

from cmlplan.state.document import StateError
from cmlplan.state.dsn import DatabaseAddress
from cmlplan.state.lock import LockInfo

_KEY = "SELECT hashtextextended('cmlplan-state:' || %s, 0)"
# A holder takes the advisory lock, then writes its row: a refusal in between waits this long for
# the row, so that it can name the holder rather than say "just starting".
NAMING_GRACE_SECONDS = 2.0


class PgLockHeld(StateError):
    """Another live session holds the lock; the message names it."""

    def __init__(self, holder: LockInfo | None, where: str, waited: float) -> None:
        self.holder = holder
        after = f"; still locked after waiting {waited:g}s" if waited > 0 else ""
        if holder is None:
            super().__init__(f"{where} is locked by another cmlplan that is just starting{after}; try again")
            return
        super().__init__(
            f"{where} is locked by {holder.describe()}{after}; the lock ends with that process's database "
            f"session, if it hangs run: cmlplan force-unlock {holder.id}"
        )


class PgLock:
    """Context manager holding the lock of ``workspace`` for ``info``, retrying for ``wait`` seconds."""

    def __init__(
        self, address: DatabaseAddress, workspace: str, where: str, info: LockInfo, wait: float = 0.0,
        poll_interval: float = 0.2,
    ) -> None:
        self.address = address
        self.workspace = workspace
        self.where = where
        self.info = info
        self.wait = wait
        self.poll_interval = poll_interval
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def acquire(self) -> LockInfo:
        deadline = time.monotonic() + self.wait
        connection = self._connect()
        try:
            while True:
                if self._try(connection):
                    self._connection = connection
                    return self.info
                holder = self._holder(connection)
                now = time.monotonic()
                if now >= deadline and (holder is not None or now >= deadline + NAMING_GRACE_SECONDS):
                    raise PgLockHeld(holder, self.where, self.wait)
                time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.05)))
        except psycopg.Error as exc:
            connection.close()
            raise StateError(f"cannot lock {self.where}: {self.address.scrub(str(exc))}") from None
        except BaseException:
            connection.close()
            raise

    def release(self) -> None:
        """Drop the row (if still ours) and the advisory lock; a dead server already dropped both."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(psycopg.Error):
            connection.execute(
                "DELETE FROM cmlplan_locks WHERE workspace = %s AND lock_id = %s", (self.workspace, self.info.id)
            )
            connection.execute(f"SELECT pg_advisory_unlock(({_KEY}))", (self.workspace,))
        with contextlib.suppress(psycopg.Error):
            connection.close()

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(self.address.dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StateError(f"cannot lock {self.where}: {self.address.scrub(str(exc))}") from None

    def _try(self, connection: psycopg.Connection[tuple[object, ...]]) -> bool:
        row = connection.execute(f"SELECT pg_try_advisory_lock(({_KEY}))", (self.workspace,)).fetchone()
        if not row or not row[0]:
            return False
        connection.execute(
            "INSERT INTO cmlplan_locks (workspace, lock_id, info, backend_pid) VALUES (%s, %s, %s::jsonb, pg_backend_pid())"
            " ON CONFLICT (workspace) DO UPDATE SET lock_id = excluded.lock_id, info = excluded.info,"
            " backend_pid = excluded.backend_pid, locked_at = now()",
            (self.workspace, self.info.id, self.info.model_dump_json()),
        )
        return True

    def _holder(self, connection: psycopg.Connection[tuple[object, ...]]) -> LockInfo | None:
        """The row of the session holding the advisory lock; None before it is written (or if stale)."""
        row = connection.execute(
            "SELECT info FROM cmlplan_locks l WHERE workspace = %s AND EXISTS (SELECT 1 FROM pg_locks p"
            " WHERE p.locktype = 'advisory' AND p.granted AND p.pid = l.backend_pid)",
            (self.workspace,),
        ).fetchone()
        return LockInfo.model_validate(row[0]) if row else None


def force_unlock(connection: psycopg.Connection[tuple[object, ...]], workspace: str, where: str, lock_id: str) -> LockInfo:
    """End the session holding ``lock_id`` (so its advisory lock goes) and drop its row."""
    row = connection.execute(
        f"SELECT info, backend_pid, pg_try_advisory_lock(({_KEY})) FROM cmlplan_locks WHERE workspace = %s",
        (workspace, workspace),
    ).fetchone()
    if row is None:
        raise StateError(f"{where} is not locked; nothing to unlock")
    holder = LockInfo.model_validate(row[0])
    if row[2]:  # we got the advisory lock: the holder's session is gone already
        connection.execute(f"SELECT pg_advisory_unlock(({_KEY}))", (workspace,))
    if holder.id != lock_id:
        raise StateError(
            f"lock id {lock_id} does not match the lock of {where}, held by {holder.describe()}; nothing was removed"
        )
    if not row[2]:
        connection.execute("SELECT pg_terminate_backend(%s)", (row[1],))
    connection.execute("DELETE FROM cmlplan_locks WHERE workspace = %s AND lock_id = %s", (workspace, lock_id))
    return holder
