"""What every provider that runs builds, deployments and the proxy shares around the rollout:
reading replicas back, planning, dispatching apply by kind, releasing leftovers.

A provider subclasses it with its builds (``build_exists``, ``apply_build``) and a ``Rollout``
over its own ``ReplicaRuntime``.
"""

from __future__ import annotations

from .base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    PlanRequest,
    PlanResult,
    ReadRequest,
    ReadResult,
    UnsupportedError,
)
from .deployments import plan_replicated, refuse_unsupported
from .rollout import Rollout


class ReplicatedProvider:
    name = ""
    kinds = frozenset({"build", "deployment", "proxy"})
    build_computed: tuple[str, ...] = ("path",)
    gpus = False  # whether deployment.gpus can be honoured
    autoscale = False  # whether deployment.autoscale can be honoured
    rollout: Rollout

    async def build_exists(self, attributes: Attributes) -> bool:
        raise NotImplementedError

    async def apply_build(self, request: ApplyRequest) -> ApplyResult:
        raise NotImplementedError

    async def read(self, request: ReadRequest) -> ReadResult:
        live_replicas = await self.rollout.live() if request.resources else {}
        live: dict[str, Attributes | None] = {}
        for ref in request.resources:
            attributes = dict(ref.attributes)
            if ref.kind == "build":
                live[ref.address] = attributes if await self.build_exists(attributes) else None
            elif ref.kind == "deployment":
                live[ref.address] = self.rollout.observed(attributes, live_replicas, owner=ref.address)
            elif ref.kind == "proxy":
                observed = self.rollout.observed(attributes, live_replicas)
                live[ref.address] = observed if observed.get("processes") else None
        return ReadResult(live=live)

    async def plan(self, request: PlanRequest) -> PlanResult:
        refuse_unsupported(request, self.name, gpus=self.gpus, autoscale=self.autoscale)
        return plan_replicated(request, self.build_computed)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.kind == "build":
            return await self.apply_build(request)
        if request.kind == "deployment":
            if request.planned is None:
                return await self.rollout.undeploy(request)
            return await self.rollout.deploy(request)
        if request.kind == "proxy":
            return await self.rollout.apply_proxy(request)
        raise UnsupportedError(f"{request.address}: kind {request.kind!r} is not supported by provider {self.name!r}")

    async def close(self) -> None:
        await self.rollout.close()

    async def release_leftovers(self, recorded: set[str]) -> list[str]:
        """Remove every replica and proxy no state records (``ReleasingLeftovers``)."""
        return await self.rollout.remove_leftovers(recorded)
