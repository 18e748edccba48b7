"""What the store keeps and the errors a caller can be told about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PredictionRow:
    uuid: str
    project: str
    model: str
    deployment: str
    build: str
    replica: str
    ts_ms: int
    metrics: str  # JSON text, as the replica sent it


class UnknownPrediction(LookupError):
    """No prediction with this UUID was stored (it tracked nothing, or it never existed)."""


class WrongProject(PermissionError):
    """The prediction belongs to a project the caller may not write to."""
