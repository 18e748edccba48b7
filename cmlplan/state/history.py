"""What every apply changed, per address: CML's deployment history, kept inside the state.

Each finished action appends one ``HistoryEntry`` to ``StateDocument.history[address]``: when,
by whom, the action, which attributes changed, and for a deployment its id, build, replicas and
registered version. A deployment entry gets ``stopped_at`` when a later apply replaces it (new
deployment id), stops it or deletes it. The newest ``MAX_ENTRIES`` per address are kept.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

MAX_ENTRIES = 200
_NOISE = {"processes"}  # refreshed facts: a change there alone is not what an apply "changed"


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    at: AwareDatetime
    by: str
    action: str
    serial: int = Field(ge=0, description="the state serial this entry was written with")
    changed: list[str] = Field(default_factory=list)
    deployment_id: int | None = None
    build: int | None = None
    replicas: int | None = None
    stopped: bool | None = None
    registered: dict[str, JsonValue] | None = None
    stopped_at: AwareDatetime | None = None


def applier_identity() -> str:
    """``user@host`` of whoever runs this apply (``CMLPLAN_USER`` overrides the user, for CI)."""
    user = os.environ.get("CMLPLAN_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry and no $USER, common in containers
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def history_entry(
    kind: str, action: str, before: dict[str, Any] | None, after: dict[str, Any] | None, serial: int, by: str
) -> HistoryEntry:
    now = datetime.now(UTC).replace(microsecond=0)
    entry = HistoryEntry(at=now, by=by, action=action, serial=serial, changed=changed_paths(before, after))
    if kind == "deployment" and after is not None:
        registered = after.get("registered")
        entry.deployment_id = _int(after.get("deployment_id"))
        entry.build = _int(after.get("build"))
        entry.replicas = _int(after.get("replicas"))
        entry.stopped = bool(after.get("stopped"))
        entry.registered = (
            {k: registered.get(k) for k in ("name", "version", "alias", "run_id")} if isinstance(registered, dict) else None
        )
        if entry.stopped:
            entry.stopped_at = now
    return entry


def append_entry(entries: list[HistoryEntry], entry: HistoryEntry, deleted: bool) -> list[HistoryEntry]:
    """``entries`` plus ``entry``; the deployment it ends gets ``stopped_at``."""
    if entries:
        last = entries[-1]
        ends = deleted or (entry.deployment_id is not None and entry.deployment_id != last.deployment_id)
        if ends and last.deployment_id is not None and last.stopped_at is None:
            last.stopped_at = entry.at
    return [*entries, entry][-MAX_ENTRIES:]


def changed_paths(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Top-level attributes that differ (one level deeper inside objects), noise left out."""
    if before is None or after is None:
        return []
    paths = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if key in _NOISE or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            paths += [f"{key}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            paths.append(key)
    return paths


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
