"""FakeProvider: an in-memory world for unit tests of the plan/apply engine, and nothing else."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from ..values import UNKNOWN
from .base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    PlanRequest,
    PlanResult,
    ProviderContext,
    ProviderError,
    ReadRequest,
    ReadResult,
)

_COMPUTED = {"build": ("path",), "deployment": ("deployment_id",), "proxy": ("url",), "registry": ("uri",)}
_REPLACE = {
    "build": ("hash",),
    "deployment": ("build", "build_hash", "env", "cpu", "memory"),
    "proxy": ("host", "port"),
}
_CREATE_BEFORE_DESTROY = {"deployment"}


class FakeProvider:
    """Keeps the world in a dict; tests inspect ``world`` and ``calls`` and inject ``fail_on``."""

    name = "fake"
    kinds = frozenset(_COMPUTED)

    def __init__(self, context: ProviderContext | None = None) -> None:
        self.context = context
        self.world: dict[str, Attributes] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on: set[str] = set()
        self.delay: float = 0.0
        self._next_id = 1

    async def read(self, request: ReadRequest) -> ReadResult:
        return ReadResult(live={r.address: copy.deepcopy(self.world.get(r.address)) for r in request.resources})

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.desired is None:
            return PlanResult(planned=None)
        planned: dict[str, Any] = dict(request.desired)
        for key in _COMPUTED.get(request.kind, ()):
            planned[key] = (request.current or {}).get(key, UNKNOWN)
        return PlanResult(
            planned=planned,
            requires_replace=_REPLACE.get(request.kind, ()),
            create_before_destroy=request.kind in _CREATE_BEFORE_DESTROY,
            computed=_COMPUTED.get(request.kind, ()),
        )

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        self.calls.append((request.address, "delete" if request.planned is None else "apply"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.address in self.fail_on:
            raise ProviderError(f"{request.address}: injected failure")
        if request.planned is None:
            self.world.pop(request.address, None)
            return ApplyResult(attributes=None)
        attributes = dict(request.planned)
        for key in _COMPUTED.get(request.kind, ()):
            if attributes.get(key) == UNKNOWN or request.replace:
                attributes[key] = f"{key}-{self._next_id}"
                self._next_id += 1
        self.world[request.address] = copy.deepcopy(attributes)
        return ApplyResult(attributes=attributes)

    async def close(self) -> None:
        return None
