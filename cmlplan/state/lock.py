"""An exclusive lock file next to the state, so two applies never interleave their writes.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local filesystems) holding who took
it. A lock whose holder died is reported, never stolen: only ``force_unlock`` with the exact lock id
removes someone else's lock, so a human decides that the other run is really gone.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from cmlplan import __version__
from cmlplan.state.document import StateError

# How long a lock file may stay empty or half-written before we call it unreadable: the holder
# writes it right after creating it, so this only matters when a process died in between.
_UNREADABLE_GRACE = 1.0


class LockInfo(BaseModel):
    """Who holds the state lock, and since when; shown to anyone who finds it taken."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    pid: int
    host: str
    user: str
    operation: str
    created_at: AwareDatetime
    cmlplan_version: str

    @classmethod
    def create(cls, operation: str) -> LockInfo:
        """A lock description for this process running ``operation`` (e.g. ``"apply"``)."""
        return cls(
            id=str(uuid.uuid4()),
            pid=os.getpid(),
            host=socket.gethostname(),
            user=_current_user(),
            operation=operation,
            created_at=datetime.now(UTC).replace(microsecond=0),
            cmlplan_version=__version__,
        )

    def describe(self) -> str:
        """``root@host pid 1234 (apply, since 2026-11-25T18:00:00Z, lock id XYZ)``."""
        since = self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.user}@{self.host} pid {self.pid} ({self.operation}, since {since}, lock id {self.id})"

    def holder_is_gone(self) -> bool:
        """True only when we can tell: same host, and no process has that pid any more."""
        return self.host == socket.gethostname() and not _pid_alive(self.pid)


class LockHeld(StateError):
    """Someone else holds the state lock; the message says who and how to force-unlock."""

    def __init__(self, holder: LockInfo, path: Path, waited: float = 0.0) -> None:
        self.holder = holder
        self.path = path
        after = f"; still locked after waiting {waited:g}s" if waited > 0 else ""
        if holder.holder_is_gone():
            advice = f"the holder is gone (no process {holder.pid} on this host), run: cmlplan force-unlock {holder.id}"
        else:
            advice = f"if that process is gone, run: cmlplan force-unlock {holder.id}"
        super().__init__(f"state is locked by {holder.describe()}{after}; {advice}")


class FileLock:
    """Context manager holding the lock file at ``path`` for ``info``; ``wait`` seconds of retrying."""

    def __init__(self, path: Path, info: LockInfo, wait: float = 0.0, poll_interval: float = 0.1) -> None:
        self.path = path
        self.info = info
        self.wait = wait
        self.poll_interval = poll_interval
        self._held = False

    def acquire(self) -> LockInfo:
        """Take the lock or raise ``LockHeld`` naming the holder (after ``wait`` seconds)."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path, deadline)
                if holder is not None and time.monotonic() >= deadline:
                    raise LockHeld(holder, self.path, self.wait) from None
                if holder is not None:
                    time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.0)))
                continue  # released meanwhile, or still waiting: try again
            except FileNotFoundError:
                self._make_parent()
                continue
            except OSError as exc:
                raise StateError(f"cannot create state lock {self.path}: {exc.strerror}") from None
            self._write(fd)
            self._held = True
            return self.info

    def release(self) -> None:
        """Remove the lock file, but only if it is still ours (it may have been force-unlocked)."""
        if not self._held:
            return
        self._held = False
        try:
            current = read_lock(self.path)
        except StateError:
            return
        if current is not None and current.id == self.info.id:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:  # e.g. the state folder went read-only: say so, never mask the run's outcome
                print(
                    f"Warning: cannot remove the state lock {self.path} ({exc.strerror or exc}); "
                    f"once that is fixed, run: cmlplan force-unlock {self.info.id}",
                    file=sys.stderr,
                )

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _make_parent(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state lock {self.path}: {exc.strerror}") from None

    def _write(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.info.model_dump_json())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise StateError(f"cannot write state lock {self.path}: {exc.strerror}") from None


def read_lock(path: Path) -> LockInfo | None:
    """The current holder, None if unlocked; ``StateError`` if the lock file is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read state lock {path}: {exc.strerror}") from None
    try:
        return LockInfo.model_validate_json(raw)
    except ValidationError:
        raise StateError(
            f"state lock {path} is held but unreadable; if no cmlplan is running, delete {path}"
        ) from None


def force_unlock(path: Path, lock_id: str) -> LockInfo:
    """Remove the lock at ``path`` if its id is ``lock_id``; returns who held it."""
    current = read_lock(path)
    if current is None:
        raise StateError(f"state is not locked (no lock file at {path}); nothing to unlock")
    if current.id != lock_id:
        raise StateError(
            f"lock id {lock_id} does not match the state lock {path}, held by {current.describe()}; "
            "nothing was removed"
        )
    path.unlink(missing_ok=True)
    return current


def _read_holder(path: Path, deadline: float) -> LockInfo | None:
    """Read the holder, giving a just-created (still empty) lock file a moment to be written."""
    give_up = max(time.monotonic() + _UNREADABLE_GRACE, deadline)
    while True:
        try:
            return read_lock(path)
        except StateError:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.01)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # cannot tell, so assume it is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. EPERM: it exists but belongs to someone else
    return True


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no $USER, common in containers
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
