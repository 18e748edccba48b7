"""Live apply progress for people (one line per step, NO_COLOR and non-TTY aware) or as JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import click

from ..plan.style import Style, color_enabled

_ING = {
    "create": "Creating...",
    "update": "Updating...",
    "replace": "Replacing (destroy, then create)...",
    "create-then-delete": "Replacing (new first, then the old one goes)...",
    "delete": "Destroying...",
}
_DONE = {
    "create": "Creation complete",
    "update": "Update complete",
    "replace": "Replacement complete",
    "create-then-delete": "Replacement complete",
    "delete": "Destruction complete",
}


class TextProgress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.style = Style(color_enabled(self.stream))
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started_at = time.monotonic()

    def _line(self, text: str) -> None:
        click.echo(text, file=self.stream)

    def started(self, address: str, action: str) -> None:
        self._line(f"{self.style(address, 'bold')}: {_ING.get(action, action)}")

    def progress(self, address: str, message: str) -> None:
        elapsed = time.monotonic() - self.started_at
        self._line(f"{self.style(address, 'bold')}: {message} {self.style(f'[{elapsed:.0f}s]', 'dim')}")

    def finished(self, address: str, action: str, seconds: float) -> None:
        self._line(f"{self.style(address, 'bold')}: {self.style(_DONE.get(action, action), 'green')} after {seconds:.1f}s")

    def failed(self, address: str, action: str, error: str) -> None:
        lines = without_address(address, error).splitlines() or [error]
        self._line(f"{self.style(address, 'bold')}: {self.style('failed', 'red', 'bold')}: {lines[0]}")
        for line in lines[1:]:
            self._line(f"    {line}")

    def key_created(self, address: str, path: str, secret: str) -> None:
        if self.interactive:
            self._line(
                f"{self.style(address, 'bold')}: new key (shown once): {self.style(secret, 'yellow', 'bold')}"
                f" (saved to {path}, mode 0600)"
            )
        else:
            self._line(f"{address}: new key saved to {path} (mode 0600; not printed to a non-terminal)")


class JsonProgress:
    """One JSON object per line on stdout: type = started | progress | finished | failed | key."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _emit(self, **fields: object) -> None:
        self.stream.write(json.dumps(fields) + "\n")
        self.stream.flush()

    def started(self, address: str, action: str) -> None:
        self._emit(type="started", address=address, action=action)

    def progress(self, address: str, message: str) -> None:
        self._emit(type="progress", address=address, message=message)

    def finished(self, address: str, action: str, seconds: float) -> None:
        self._emit(type="finished", address=address, action=action, seconds=round(seconds, 3))

    def failed(self, address: str, action: str, error: str) -> None:
        self._emit(type="failed", address=address, action=action, error=error)

    def key_created(self, address: str, path: str, secret: str) -> None:
        self._emit(type="key", address=address, path=path)


def without_address(address: str, error: str) -> str:
    """``error`` without a leading ``<address>: ``, for lines that print the address before it
    (provider errors name their resource, so the line would say it twice)."""
    return error.removeprefix(f"{address}: ")
