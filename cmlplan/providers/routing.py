"""The serving proxy's routing table file: provider-side read-modify-write, atomic, under a lock.

The format is pinned in docs/internals.md. Deployments own their model's entry, the proxy resource
owns the settings, API keys and projects; each writer changes only its part and bumps the
generation so the proxy (and a rollout waiting for it) can tell a reload happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class RoutingTable:
    def __init__(self, path: Path, salt: str) -> None:
        self.path = path
        self.salt = salt

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            data = {}
        data.setdefault("version", FORMAT_VERSION)
        data.setdefault("generation", 0)
        data["salt"] = self.salt
        data.setdefault("proxy", {"busy_timeout": 30.0, "request_timeout": 30.0, "max_request_bytes": 5_000_000})
        data.setdefault("models", {})
        data.setdefault("api_keys", {})
        data.setdefault("projects", {})
        return data

    def change(self, mutate: Callable[[dict[str, Any]], None]) -> int:
        """Apply ``mutate`` to the table under a lock and write it atomically; returns the new generation."""
        with self._locked():
            data = self.read()
            mutate(data)
            data["generation"] = int(data.get("generation", 0)) + 1
            self._write(data)
            return data["generation"]

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
                return entry
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
