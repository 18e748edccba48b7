"""The file backend's append-only journal: one line per recorded step, fsynced once per batch.

``state.json.journal`` holds ``StateDelta`` lines (``<crc32> <json>``) that follow the serial of
``state.json``. Every batch starts on a fresh 4 KiB block, so a torn write can only damage the
batch being written, never a block holding committed lines (the gap is a hole that reads as NULs,
and on a full disk the new block cannot be allocated, so the write fails cleanly). A reader skips
NULs, stops at a torn last line, and refuses a damaged line that is followed by more data.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from cmlplan.state.document import StateDelta, StateError

BLOCK = 4096


def journal_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".journal")


def encode(deltas: Sequence[StateDelta]) -> bytes:
    """The batch as journal lines."""
    lines = []
    for delta in deltas:
        payload = delta.to_json().encode("ascii")
        lines.append(b"%08x %s\n" % (zlib.crc32(payload), payload))
    return b"".join(lines)


def parse(raw: bytes, source: Path) -> list[StateDelta]:
    """Every complete, intact line of ``raw`` (a journal's bytes), in order."""
    deltas: list[StateDelta] = []
    position = 0
    size = len(raw)
    while position < size:
        if raw[position] == 0:  # the hole before a block-aligned batch
            position += 1
            continue
        end = raw.find(b"\n", position)
        line = raw[position:end] if end >= 0 else raw[position:]
        delta = _decode(line, source)
        following = raw[end + 1 :].strip(b"\0") if end >= 0 else b""
        if delta is None:
            if following:
                raise StateError(
                    f"state journal {source} is damaged at byte {position} and more entries follow; "
                    "nothing was changed, restore it from a backup or delete it to go back to the state file"
                )
            break  # a torn last line: its batch was never confirmed
        deltas.append(delta)
        if end < 0:
            break
        position = end + 1
    return deltas


def _decode(line: bytes, source: Path) -> StateDelta | None:
    crc, _, payload = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(payload):
            return None
    except ValueError:
        return None
    try:
        return StateDelta.model_validate_json(payload)
    except ValidationError as exc:  # the checksum held, so this is a newer or hand-edited format
        raise StateError(f"state journal {source} holds an entry this cmlplan cannot read ({exc.error_count()} problems)") from None


def read(path: Path) -> tuple[list[StateDelta], int]:
    """The journal's entries and its size in bytes; none and 0 when there is no journal."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise StateError(f"cannot read state journal {path}: {exc.strerror or exc}") from None
    return parse(raw, path), len(raw)


def append(path: Path, data: bytes) -> int:
    """Write ``data`` on a fresh block at the journal's end and fsync it; returns the new size.

    On failure the journal is cut back to its previous length, so it never keeps half a batch.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        offset = -(-size // BLOCK) * BLOCK
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], offset + written)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        if size == 0:
            _fsync_dir(path.parent)
        return offset + len(data)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
