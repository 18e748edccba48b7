"""The state document: what cmlplan believes exists, written after every change.

Like Terraform's state it carries a ``lineage`` (fixed when the state is born) and a ``serial``
(bumped on every write) so a backend can refuse to overwrite newer or unrelated state. Secrets are
never stored: callers keep ``hash_secret`` digests salted with ``salt``.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
)

from cmlplan import __version__
from cmlplan.errors import CmlplanError
from cmlplan.providers.attributes import problem as attribute_problem
from cmlplan.state.history import HistoryEntry, append_entry

FORMAT_VERSION = 1
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_PATH_PARTS = 8  # deeper error paths (in nested attributes) are cut so the message stays short


class StateError(CmlplanError):
    """The state (file, lock or backend) cannot be used; the message names the file."""


def _is_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID") from None  # pydantic turns this into an error naming the field
    return value


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


Lineage = Annotated[str, AfterValidator(_is_uuid)]
HexSalt = Annotated[str, Field(pattern=r"^[0-9a-f]{32,}$")]


class _Model(BaseModel):
    # Unknown fields are refused: a new field means a new format_version.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ResourceState(_Model):
    """One managed object as last applied."""

    kind: str
    provider: str
    attributes: dict[str, JsonValue] = Field(default_factory=dict)
    dependencies: list[str] = Field(default_factory=list)
    created_at: AwareDatetime = Field(default_factory=_now)
    updated_at: AwareDatetime = Field(default_factory=_now)


class BuildRecord(_Model):
    """One build of a model, kept so deployments can name ``build.<model>#<number>``."""

    number: int = Field(ge=1)
    hash: str
    created_at: AwareDatetime = Field(default_factory=_now)
    attributes: dict[str, JsonValue] = Field(default_factory=dict)


class StateDocument(_Model):
    """The whole state of one workspace; mutate it with the helpers, persist it via a backend."""

    format_version: Literal[1] = FORMAT_VERSION
    serial: int = Field(default=0, ge=0)
    lineage: Lineage
    cmlplan_version: str = __version__
    workspace_id: str
    salt: HexSalt
    resources: dict[str, ResourceState] = Field(default_factory=dict)
    builds: dict[str, list[BuildRecord]] = Field(default_factory=dict)
    counters: dict[str, int] = Field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = Field(default_factory=dict)  # see state/history.py
    # What changed since the last ``take_delta()``, so a backend can record one action in O(1).
    _changed: set[str] = PrivateAttr(default_factory=set)
    _new_builds: dict[str, list[BuildRecord]] = PrivateAttr(default_factory=dict)
    _new_history: set[str] = PrivateAttr(default_factory=set)

    def __eq__(self, other: object) -> bool:
        """Equal when the recorded content is; pending-change bookkeeping does not count."""
        if not isinstance(other, StateDocument):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def new(cls, workspace_id: str) -> StateDocument:
        """A fresh state: new lineage, serial 0, a random salt for key hashes."""
        return cls(lineage=str(uuid.uuid4()), workspace_id=workspace_id, salt=secrets.token_hex(16))

    def next_id(self, counter: str) -> int:
        """Hand out the next id of ``counter`` (1, 2, ...); ids are never reused, even after deletes."""
        value = self.counters.get(counter, 1)
        self.counters[counter] = value + 1
        return value

    def set_resource(self, address: str, resource: ResourceState) -> None:
        """Record ``resource`` at ``address``, replacing what was there."""
        self.resources[address] = resource
        self._changed.add(address)

    def remove_resource(self, address: str) -> ResourceState | None:
        """Forget ``address``; returns what was recorded, or None if nothing was."""
        self._changed.add(address)
        return self.resources.pop(address, None)

    def add_build(self, model_address: str, record: BuildRecord) -> None:
        """Append a build of ``model_address``."""
        self.builds.setdefault(model_address, []).append(record)
        self._new_builds.setdefault(model_address, []).append(record)

    def has_pending_changes(self) -> bool:
        """True when resources or builds changed since the last ``take_delta()``/``mark_saved()``."""
        return bool(self._changed or self._new_builds or self._new_history)

    def take_delta(self) -> StateDelta:
        """What changed since the last call, as the next serial; bumps ``serial`` and forgets the changes.

        Costs what changed, not the size of the document: this is how one action is recorded.
        """
        delta = StateDelta(
            lineage=self.lineage,
            serial=self.serial + 1,
            resources={address: self.resources.get(address) for address in sorted(self._changed)},
            builds={model: list(records) for model, records in self._new_builds.items()},
            counters=dict(self.counters),
            history={address: list(self.history.get(address, [])) for address in sorted(self._new_history)},
        )
        self.serial += 1
        self.mark_saved()
        return delta

    def mark_saved(self) -> None:
        """Forget the pending changes: they are in a document written whole."""
        self._changed = set()
        self._new_builds = {}
        self._new_history = set()

    def apply_delta(self, delta: StateDelta) -> None:
        """Fold a recorded delta (the next serial of this lineage) into this document."""
        if delta.lineage != self.lineage or delta.serial != self.serial + 1:
            raise StateError(
                f"journal entry for serial {delta.serial} (lineage {delta.lineage}) does not follow "
                f"serial {self.serial} (lineage {self.lineage})"
            )
        for address, resource in delta.resources.items():
            if resource is None:
                self.resources.pop(address, None)
            else:
                self.resources[address] = resource
        for model, records in delta.builds.items():
            self.builds.setdefault(model, []).extend(records)
        self.counters = dict(delta.counters)
        self.history.update({address: list(entries) for address, entries in delta.history.items()})
        self.serial = delta.serial

    def add_history(self, address: str, entry: HistoryEntry, deleted: bool = False) -> None:
        """Append what an apply did to ``address`` (history outlives the resource itself)."""
        self.history[address] = append_entry(self.history.get(address, []), entry, deleted)
        self._new_history.add(address)

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, indent 2, trailing newline) so state diffs stay readable.

        ASCII-only, so any string that parsed (even a lone surrogate escape) can be written back.
        """
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> StateDocument:
        """Parse state read from ``source``; any problem is a one-line ``StateError`` naming it."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise StateError(f"state file {source} is not UTF-8 text (byte {exc.start})") from None
        data = _load_json(text, source)
        if not isinstance(data, dict):
            raise StateError(f"state file {source} must hold a JSON object, found {_json_type(data)}")
        version = data.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise StateError(
                f"state file {source} was written by a newer cmlplan (format {version}); "
                f"this cmlplan reads format {FORMAT_VERSION}"
            )
        try:
            document = cls.model_validate(data)
        except ValidationError as exc:
            raise StateError(f"state file {source} is invalid: {_describe(exc)}") from None
        for address, resource in document.resources.items():
            found = attribute_problem(resource.kind, resource.attributes)
            if found is not None:
                raise StateError(f"state file {source} is invalid: resources[{address!r}].attributes.{found}")
        return document


class StateDelta(_Model):
    """One recorded step of a state: the resources it set (None: removed), builds added, counters."""

    lineage: Lineage
    serial: int = Field(ge=1)
    cmlplan_version: str = __version__
    resources: dict[str, ResourceState | None] = Field(default_factory=dict)
    builds: dict[str, list[BuildRecord]] = Field(default_factory=dict)
    counters: dict[str, int] = Field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = Field(default_factory=dict)  # whole list per changed address

    def to_json(self) -> str:
        """One line of ASCII JSON (no newline), the unit a journal or history row stores."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=True, allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"state file {source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise StateError(f"state file {source} is not valid state (JSON nested too deeply)") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with thousands of digits
        reason = "a number has too many digits" if "digits" in str(exc) else _one_line(str(exc))
        raise StateError(f"state file {source} is not valid JSON ({reason})") from None


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _describe(exc: ValidationError) -> str:
    """The first error as ``path: message`` (e.g. ``resources['model.a/b'].kind``), plus a count of the rest."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = first["loc"]
    path = ""
    for part in loc[:_MAX_PATH_PARTS]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    if len(loc) > _MAX_PATH_PARTS:
        path += "..."
    rest = len(errors) - 1
    more = f" (and {rest} more {'problem' if rest == 1 else 'problems'})" if rest else ""
    return _one_line(f"{path or 'top level'}: {first['msg']}{more}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
