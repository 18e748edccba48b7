"""The serving proxy's routing table file: provider-side read-modify-write, atomic, under a lock.

The format is ``schemas/routes-v1.json`` (``routes_schema.ROUTES_SCHEMA``). Deployments own their
model's entry, the proxy resource owns the settings, API keys and projects; each writer changes
only its part and bumps the generation so the proxy (and a rollout waiting for it) can tell a
reload happened. The file is read strictly: a corrupt or unreadable one is an error, never an empty
table (writing that back would drop every other model's route).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema

from ..serving.defaults import BUSY_TIMEOUT, MAX_REQUEST_BYTES, REQUEST_TIMEOUT
from .base import ProviderError
from .routes_schema import ROUTES_SCHEMA

FORMAT_VERSION = 1
_VALIDATOR = jsonschema.Draft202012Validator(ROUTES_SCHEMA)


class RoutesFileError(ProviderError):
    """The routes file cannot be read or does not match its schema; one line naming file and field."""


def empty_table(salt: str) -> dict[str, Any]:
    """The table before anything was routed."""
    return {
        "version": FORMAT_VERSION,
        "generation": 0,
        "salt": salt,
        "proxy": {"busy_timeout": BUSY_TIMEOUT, "request_timeout": REQUEST_TIMEOUT, "max_request_bytes": MAX_REQUEST_BYTES},
        "models": {},
        "api_keys": {},
        "projects": {},
    }


def check_table(data: Any, source: str) -> None:
    """Raise RoutesFileError unless ``data`` matches the schema; names the first bad field."""
    error = next(iter(sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    raise RoutesFileError(f"routes file {source} is invalid: {where or 'top level'}: {error.message}")


def parse_table(text: bytes | str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        raise RoutesFileError(f"routes file {source} is not valid JSON ({reason}); nothing was changed") from None
    check_table(data, source)
    return data


class RoutingTable:
    def __init__(self, path: Path, salt: str) -> None:
        self.path = path
        self.salt = salt

    def read(self) -> dict[str, Any]:
        """The table as written, or the empty table when there is no file yet; raises RoutesFileError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return empty_table(self.salt)
        except OSError as exc:
            raise RoutesFileError(f"cannot read routes file {self.path}: {exc.strerror or exc}") from None
        data = parse_table(raw, str(self.path))
        data["salt"] = self.salt
        return data

    def change(self, mutate: Callable[[dict[str, Any]], None]) -> int:
        """Apply ``mutate`` to the table under a lock and write it atomically; returns the new generation."""
        with self._locked():
            data = self.read()
            mutate(data)
            data["generation"] = int(data.get("generation", 0)) + 1
            check_table(data, f"{self.path} (about to be written)")
            self._write(data)
            return int(data["generation"])

    def set_model(self, address: str, entry: dict[str, Any] | None) -> int:
        """Route ``address`` by its access key hash (``entry['key_hash']``), or remove its route."""

        def mutate(data: dict[str, Any]) -> None:
            models = {h: m for h, m in data["models"].items() if m.get("address") != address}
            if entry is not None:
                body = {k: v for k, v in entry.items() if k != "key_hash"}
                models[entry["key_hash"]] = {"address": address, **body}
            data["models"] = models

        return self.change(mutate)

    def model(self, address: str) -> dict[str, Any] | None:
        for entry in self.read()["models"].values():
            if entry.get("address") == address:
                return dict(entry)
        return None

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def snapshot_model(table: RoutingTable, address: str) -> dict[str, dict[str, Any]]:
    """The routes of ``address`` as they are now (by key hash), so a failed rollout can put them back."""
    return {h: dict(m) for h, m in table.read()["models"].items() if m.get("address") == address}


def restore_model(table: RoutingTable, address: str, snapshot: dict[str, dict[str, Any]]) -> int:
    """Put back what ``snapshot_model`` saw for ``address``; returns the new generation."""

    def mutate(data: dict[str, Any]) -> None:
        models = {h: m for h, m in data["models"].items() if m.get("address") != address}
        models.update(snapshot)
        data["models"] = models

    return table.change(mutate)
