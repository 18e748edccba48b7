"""State kept in a local JSON file, written so a crash or full disk never loses it.

Every write goes to a temp file in the same directory, is fsynced, and is renamed over the state
file; the file it replaces is first copied to ``state.json.backup``. At every instant the state
file is either the old or the new complete document, and the backup holds the serial before it.

An apply records each action as a line of ``state.json.journal`` (see ``journal.py``) instead of
rewriting the document, and writes the document whole again (a checkpoint) at the end; reading
folds whatever the journal holds, so a run killed at any point leaves a state that loads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cmlplan import __version__
from cmlplan.state import journal
from cmlplan.state.document import StateDelta, StateDocument, StateError
from cmlplan.state.lock import FileLock, LockInfo, force_unlock

DEFAULT_STATE_PATH = Path(".cmlplan") / "state.json"


class FileBackend:
    """A ``StateBackend`` over ``path`` (default ``.cmlplan/state.json``), locked by ``state.lock`` beside it."""

    shared = False

    def __init__(self, path: Path | str = DEFAULT_STATE_PATH) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.lock_path = self.path.with_suffix(".lock")
        self.journal_path = journal.journal_path(self.path)
        self._last_written: tuple[bytes, str, int] | None = None
        # (lineage, serial, journal size) after this backend's last write: appends check it is unchanged
        self._tail: tuple[str, int, int] | None = None
        self._document_size = 0

    def describe(self) -> str:
        return f"local state file {self.path}"

    def read(self) -> StateDocument | None:
        """The stored state (journal folded in) or None; a corrupt, future-format or vanished file is an error.

        The journal is read before the document: a checkpoint replaces the document before it
        removes the journal, so whatever this races with, the entries read are the document's
        or newer, and the ones already in the document are skipped.
        """
        deltas, size = journal.read(self.journal_path)
        doc = self._read_document()
        if doc is None:
            if deltas:
                raise StateError(
                    f"state file {self.path} is missing but its journal {self.journal_path} exists; "
                    f"restore {self.path} from {self.backup_path}, or delete the journal to start over"
                )
            return None
        _fold(doc, deltas, self.journal_path)
        self._tail = (doc.lineage, doc.serial, size)
        return doc

    def append_ready(self) -> bool:
        """True when deltas can go to the journal: a document exists and no journal of another run does."""
        return self._tail is not None and self.path.exists() and _size(self.journal_path) == 0

    def _read_document(self) -> StateDocument | None:
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
        written.mark_saved()
        self._store(written, doc.serial)
        return written

    def checkpoint(self, doc: StateDocument) -> None:
        """Store ``doc`` whole at its own serial (its journal entries are in it) and drop the journal."""
        doc = doc.model_copy(update={"cmlplan_version": __version__})
        self._store(doc, doc.serial)

    def append(self, deltas: Sequence[StateDelta]) -> None:
        """Record ``deltas`` (the next serials) in the journal with one fsync; O(size of the deltas)."""
        if not deltas:
            return
        tail = self._tail
        if tail is None:
            current = self.read()
            if current is None:
                raise StateError(f"state file {self.path} does not exist yet; write the document before its journal")
            tail = (current.lineage, current.serial, _size(self.journal_path))
        lineage, serial, size = tail
        first = deltas[0]
        if first.lineage != lineage or _size(self.journal_path) != size:
            raise StateError(
                f"state file {self.path} changed since it was read (another run wrote it); "
                "refusing to record over it, re-run the command"
            )
        if first.serial != serial + 1:
            raise StateError(
                f"state file {self.path} is at serial {serial}, this run records serial {first.serial}; "
                "refusing to record out of order, re-run the command"
            )
        try:
            end = journal.append(self.journal_path, journal.encode(deltas))
        except OSError as exc:
            self._tail = None
            raise StateError(
                f"writing state file {self.path} failed ({_reason(exc)}); the previous state is intact "
                f"(serial {serial} in {self.path} and its journal)"
            ) from None
        self._tail = (lineage, deltas[-1].serial, end)
        if end > max(_FOLD_AT, 2 * self._document_size):
            self._fold_journal()

    def _fold_journal(self) -> None:
        """Rewrite the document with the journal folded in, so the journal stays small (amortized O(1))."""
        try:
            doc = self.read()
            if doc is not None:
                self._store(doc, doc.serial)
        except StateError:
            pass  # the journal is intact and committed; folding is tried again at the next threshold

    def _store(self, written: StateDocument, base_serial: int) -> None:
        data = written.to_json().encode("ascii")
        previous = self._previous_for(written.lineage, base_serial)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if previous is not None:
                _atomic_write(self.backup_path, previous)
            _atomic_write(self.path, data)
            self._last_written = (data, written.lineage, written.serial)
            journal.remove(self.journal_path)
            self._tail = (written.lineage, written.serial, 0)
            self._document_size = len(data)
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

    def lock(self, info: LockInfo, wait: float = 0.0) -> FileLock:
        return FileLock(self.lock_path, info, wait)

    def force_unlock(self, lock_id: str) -> None:
        force_unlock(self.lock_path, lock_id)

    def _previous_for(self, doc_lineage: str, doc_serial: int) -> bytes | None:
        """The bytes about to be replaced, after checking the new document really descends from them."""
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
        tail = self._tail
        if tail is not None and tail[0] == lineage and tail[1] >= serial and tail[2] == _size(self.journal_path):
            serial = tail[1]  # this backend wrote the journal as it is: no need to parse it
        else:
            deltas = [d for d in journal.read(self.journal_path)[0] if d.lineage == lineage and d.serial > serial]
            if deltas:
                serial = deltas[-1].serial
        if lineage != doc_lineage:
            raise StateError(
                f"state file {self.path} belongs to another state (lineage {lineage}, "
                f"this run has {doc_lineage}); refusing to overwrite it"
            )
        if serial > doc_serial:
            raise StateError(
                f"state file {self.path} changed since it was read (serial {serial} on disk, "
                f"{doc_serial} in this run); refusing to overwrite it, re-run the command"
            )
        return raw

    def _backup_hint(self) -> str:
        if self.backup_path.exists():
            return f"the previous state is in {self.backup_path}"
        return f"no backup exists at {self.backup_path}"


_FOLD_AT = 256 * 1024 * 1024  # journal bytes before a mid-apply fold (re-reading the state costs seconds at 10k models)


def _fold(doc: StateDocument, deltas: list[StateDelta], source: Path) -> None:
    """Apply the journal entries newer than ``doc`` (older ones are already in it)."""
    for delta in deltas:
        if delta.lineage != doc.lineage:
            raise StateError(
                f"state journal {source} belongs to another state (lineage {delta.lineage}, "
                f"the state file has {doc.lineage}); delete it if the state file is the one to keep"
            )
        if delta.serial <= doc.serial:
            continue
        try:
            doc.apply_delta(delta)
        except StateError as exc:
            raise StateError(f"state journal {source}: {exc}") from None
    doc.mark_saved()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


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
