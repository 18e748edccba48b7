"""State kept in a local JSON file, written so a crash or full disk never loses it.

Every write goes to a temp file in the same directory, is fsynced, and is renamed over the state
file; the file it replaces is first copied to ``state.json.backup``. At every instant the state
file is either the old or the new complete document, and the backup holds the serial before it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cmlplan import __version__
from cmlplan.state.document import StateDocument, StateError
from cmlplan.state.lock import FileLock, LockInfo, force_unlock

DEFAULT_STATE_PATH = Path(".cmlplan") / "state.json"


class FileBackend:
    """A ``StateBackend`` over ``path`` (default ``.cmlplan/state.json``), locked by ``state.lock`` beside it."""

    def __init__(self, path: Path | str = DEFAULT_STATE_PATH) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.lock_path = self.path.with_suffix(".lock")
        self._last_written: tuple[bytes, str, int] | None = None

    def describe(self) -> str:
        return f"local state file {self.path}"

    def read(self) -> StateDocument | None:
        """The stored state or None; a corrupt, future-format or vanished file is an error, never None."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self.backup_path.exists():
                raise StateError(
                    f"state file {self.path} is missing but its backup {self.backup_path} exists; "
                    f"restore it (mv {self.backup_path} {self.path}) or delete the backup to start over"
                ) from None
            return None
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {_reason(exc)}") from None
        try:
            return StateDocument.from_json(raw, str(self.path))
        except StateError as exc:
            raise StateError(f"{exc}; nothing was changed, {self._backup_hint()}") from None

    def write(self, doc: StateDocument) -> StateDocument:
        """Atomically store ``doc`` with the next serial; returns the written copy (``doc`` is untouched)."""
        written = doc.model_copy(deep=True, update={"serial": doc.serial + 1, "cmlplan_version": __version__})
        data = written.to_json().encode("ascii")
        previous = self._previous_for(doc)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if previous is not None:
                _atomic_write(self.backup_path, previous)
            _atomic_write(self.path, data)
            self._last_written = (data, written.lineage, written.serial)
        except OSError as exc:
            intact = (
                f"the previous state is intact at {self.path}"
                if previous is not None
                else f"no state existed at {self.path} and none was written"
            )
            raise StateError(f"writing state file {self.path} failed ({_reason(exc)}); {intact}") from None
        try:
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise StateError(
                f"state file {self.path} was written but may not be on disk ({_reason(exc)}); "
                f"the previous state is in {self.backup_path}"
            ) from None
        return written

    def lock(self, info: LockInfo, wait: float = 0.0) -> FileLock:
        return FileLock(self.lock_path, info, wait)

    def force_unlock(self, lock_id: str) -> None:
        force_unlock(self.lock_path, lock_id)

    def _previous_for(self, doc: StateDocument) -> bytes | None:
        """The bytes about to be replaced, after checking ``doc`` really descends from them."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"cannot read state file {self.path} before writing it: {_reason(exc)}"
            ) from None
        if self._last_written is not None and raw == self._last_written[0]:
            lineage, serial = self._last_written[1:]  # what this backend wrote last: no need to parse it
        else:
            try:
                current = StateDocument.from_json(raw, str(self.path))
            except StateError as exc:
                raise StateError(f"{exc}; refusing to overwrite it, {self._backup_hint()}") from None
            lineage, serial = current.lineage, current.serial
        if lineage != doc.lineage:
            raise StateError(
                f"state file {self.path} belongs to another state (lineage {lineage}, "
                f"this run has {doc.lineage}); refusing to overwrite it"
            )
        if serial > doc.serial:
            raise StateError(
                f"state file {self.path} changed since it was read (serial {serial} on disk, "
                f"{doc.serial} in this run); refusing to overwrite it, re-run the command"
            )
        return raw

    def _backup_hint(self) -> str:
        if self.backup_path.exists():
            return f"the previous state is in {self.backup_path}"
        return f"no backup exists at {self.backup_path}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a fsynced temp file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable; platforms that cannot open a directory (Windows) skip this."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
