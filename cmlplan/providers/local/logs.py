"""The local provider's logs: the files supervisord writes under ``.cmlplan/logs`` and build.log.

Every replica program has its own file (stdout and stderr together), and removing a program keeps
its file, so the logs of replicas a restart or a rollout replaced are still there. Lines carry no
time of their own, so ``since`` selects the files written to since then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ..base import LogLine, LogRequest
from .runtime import PROXY_PROGRAM, REPLICA_PREFIX

FOLLOW_POLL = 0.25


@dataclass
class _Source:
    label: str
    path: Path
    offset: int = 0


def log_sources(root: Path, request: LogRequest) -> list[_Source]:
    """The files for ``request``, oldest first: the build's, then every replica's ever started."""
    logs = root / "logs"
    found: list[_Source] = []
    if request.address.startswith("proxy."):
        found += [_Source(f"proxy ({p.stem})", p) for p in sorted(logs.glob(f"{PROXY_PROGRAM}*.log"))]
    else:
        key = request.address.split(".", 1)[1]
        project, model = key.split("/", 1)
        number = request.attributes.get("build")
        build_log = root / "builds" / project / model / str(number) / "build.log"
        if request.replica is None and isinstance(number, int) and build_log.is_file():
            found.append(_Source(f"build {number}", build_log))
        for path in logs.glob(f"{REPLICA_PREFIX}{project}.{model}.d*.log"):
            index = path.stem.rsplit(".", 1)[-1]
            if not index.isdigit() or (request.replica is not None and int(index) != request.replica):
                continue
            found.append(_Source(f"replica {index} ({path.stem})", path))
    found.sort(key=lambda s: s.path.stat().st_mtime)
    if request.since is not None:
        found = [s for s in found if s.path.stat().st_mtime >= request.since]
    return found


async def read_logs(root: Path, request: LogRequest) -> AsyncIterator[LogLine]:
    """Every line of the sources; with ``follow``, then what is appended (and new replicas' files)."""
    sources = {s.path: s for s in log_sources(root, request)}
    for source in sources.values():
        for line in _read_new(source):
            yield line
    while request.follow:
        await asyncio.sleep(FOLLOW_POLL)
        for source in log_sources(root, request.model_copy(update={"since": None})):
            sources.setdefault(source.path, source)
        for source in list(sources.values()):
            for line in _read_new(source):
                yield line


def _read_new(source: _Source) -> list[LogLine]:
    """The complete lines appended since the last read (a partial last line waits for its end)."""
    try:
        with source.path.open("rb") as handle:
            handle.seek(source.offset)
            data = handle.read()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    source.offset += end
    text = data[:end].decode("utf-8", "replace")
    return [LogLine(source=source.label, text=line) for line in text.splitlines()]
