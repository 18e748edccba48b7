"""FakeProvider: an in-memory world for unit tests of the plan/apply engine, and nothing else.

It is built from the same declarations as the real providers (the kinds they serve, their
replace paths, the computed attributes of ``attributes.py``) and records values of the declared
types, so engine tests run against the real contract.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from ..values import UNKNOWN
from .attributes import ATTRIBUTES, check
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
from .deployments import DEPLOYMENT_REPLACE_PATHS, PROXY_REPLACE_PATHS, plan_replicated

BUILD_COMPUTED = ATTRIBUTES["build"].computed
_LABELS = ("model", "project", "name")
# what the real providers read back from state rather than from what runs (a fingerprint of a
# secret is nowhere in a process), so a state upgrade is seen the same way here
_RECORDED_ONLY = ("env_fingerprints",)


class FakeProvider:
    """Keeps the world in a dict; tests inspect ``world`` and ``calls`` and inject ``fail_on``."""

    name = "fake"
    kinds = frozenset({"build", "deployment", "proxy"})
    replace_paths = {"build": ("hash",), "deployment": DEPLOYMENT_REPLACE_PATHS, "proxy": PROXY_REPLACE_PATHS}

    def __init__(self, context: ProviderContext | None = None) -> None:
        self.context = context
        self.world: dict[str, Attributes] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on: set[str] = set()
        self.delay: float = 0.0

    async def read(self, request: ReadRequest) -> ReadResult:
        live = {r.address: copy.deepcopy(self._find(r.address, r.attributes)) for r in request.resources}
        for ref in request.resources:
            found = live[ref.address]
            for key in _RECORDED_ONLY:
                if found is not None and key in ref.attributes:
                    found[key] = copy.deepcopy(ref.attributes[key])  # nothing live holds it: read back as recorded
        for address, attributes in live.items():
            if attributes and isinstance(attributes.get("processes"), list) and "replicas" in attributes:
                # a test that sets the world's replicas scaled it by hand: the world runs that many
                wanted = 0 if attributes.get("stopped") else int(attributes["replicas"])
                if len(attributes["processes"]) != wanted:
                    attributes["processes"] = _computed(address, "processes", attributes)
        return ReadResult(live=live)

    def _find(self, address: str, recorded: Attributes) -> Attributes | None:
        """What runs for ``address``, or (as the real providers find replicas by their recorded process
        names) the object its recorded identity names, whatever address it was created under."""
        if address in self.world:
            return self.world[address]
        for key in ("processes", "path"):
            if recorded.get(key):
                for attributes in self.world.values():
                    if attributes.get(key) == recorded[key]:
                        # names are labels read back as recorded, as the real providers do
                        return {**attributes, **{k: recorded[k] for k in _LABELS if k in recorded}}
        return None

    async def plan(self, request: PlanRequest) -> PlanResult:
        return plan_replicated(request, BUILD_COMPUTED)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        self.calls.append((request.address, "delete" if request.planned is None else "apply"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.address in self.fail_on:
            raise ProviderError(f"{request.address}: injected failure")
        if request.planned is None:
            self.world.pop(request.address, None)
            return ApplyResult(attributes=None)
        attributes: dict[str, Any] = dict(request.planned)
        for key in ATTRIBUTES[request.kind].computed:
            if attributes.get(key) == UNKNOWN or request.replace:
                attributes[key] = _computed(request.address, key, attributes)
        if request.kind == "deployment" and not request.replace:
            attributes["processes"] = _scaled(request.address, attributes)  # like a rollout's update
        check(request.address, request.kind, attributes)  # what a real provider records has these types
        self.world[request.address] = copy.deepcopy(attributes)
        return ApplyResult(attributes=attributes)

    async def close(self) -> None:
        return None


def _computed(address: str, key: str, attributes: Attributes) -> Any:
    if key == "path":
        return f"/fake/{address}"
    if key == "processes":
        count = 0 if attributes.get("stopped") else int(attributes.get("replicas") or 0)
        ident = attributes.get("deployment_id", "p")
        return [{"name": f"fake.{address}.d{ident}.{i}", "index": i} for i in range(count)]
    return f"{key}-{address}"


def _scaled(address: str, attributes: Attributes) -> list[dict[str, Any]]:
    """The recorded processes kept by index, cut or topped up to the wanted count."""
    wanted = _computed(address, "processes", attributes)
    kept = {p["index"]: p for p in attributes.get("processes") or [] if isinstance(p, dict)}
    return [kept.get(p["index"], p) for p in wanted]
