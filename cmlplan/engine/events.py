"""What apply reports while it works; the CLI decides how it looks (live lines, JSON events)."""

from __future__ import annotations

from typing import Protocol


class ApplyEvents(Protocol):
    def started(self, address: str, action: str) -> None: ...

    def progress(self, address: str, message: str) -> None: ...

    def finished(self, address: str, action: str, seconds: float) -> None: ...

    def failed(self, address: str, action: str, error: str) -> None: ...

    def key_created(self, address: str, path: str, secret: str) -> None: ...


class SilentEvents:
    def started(self, address: str, action: str) -> None:
        return None

    def progress(self, address: str, message: str) -> None:
        return None

    def finished(self, address: str, action: str, seconds: float) -> None:
        return None

    def failed(self, address: str, action: str, error: str) -> None:
        return None

    def key_created(self, address: str, path: str, secret: str) -> None:
        return None
