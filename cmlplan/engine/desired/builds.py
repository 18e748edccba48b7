"""Choosing a model's build: the pinned one, the recorded one with the same hash, or a new one.

Builds are content-addressed (same inputs, same hash, no rebuild) and numbered from 1 per model;
both file + function builds and registered-version builds go through ``choose_build``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import CmlplanError
from ...specs import Resource
from ...state.document import StateDocument
from ..addresses import build_address
from .world import Builder, constant

Notes = Callable[[dict[str, Any] | None, dict[str, Any]], list[str]]


def choose_build(
    b: Builder, resource: Resource, name: str, digest: str, attributes: dict[str, Any], notes: Notes
) -> tuple[int, dict[str, Any]]:
    """The build number the deployment runs and its attributes; adds a build node when it is new."""
    address = resource.address
    history = b.history.get(address, {})
    pinned = resource.spec.deployment.build
    if pinned is not None:
        if pinned not in history:
            known = ", ".join(str(n) for n in sorted(history)) or "none yet"
            raise CmlplanError(
                f"{resource.origin}: {address}: deployment.build {pinned} does not exist (builds: {known})"
            )
        return pinned, history[pinned]
    existing = next((number for number, attrs in history.items() if attrs.get("hash") == digest), None)
    if existing is not None:
        return existing, history[existing]
    number = next_build_number(b.state, address, history)
    attributes = {**attributes, "number": number}
    previous = history[max(history)] if history else None
    b.add(
        build_address(name, number),
        "build",
        b.provider,
        (address,),
        constant(attributes),
        notes=tuple(notes(previous, attributes)),
    )
    return number, attributes


def next_build_number(state: StateDocument | None, model: str, history: dict[int, dict[str, Any]]) -> int:
    numbers = [0, *history]
    if state is not None:
        numbers += [record.number for record in state.builds.get(model, [])]
    return max(numbers) + 1
