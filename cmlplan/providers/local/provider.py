"""The local provider: builds as venvs + read-only snapshots, replicas and the proxy as processes
under one supervisord per workspace (``runtime.SupervisorRuntime``), rolled out by the shared
``rollout.Rollout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from ..attributes import check
from ..base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    LogLine,
    LogRequest,
    PlanRequest,
    PlanResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
)
from ..buildfiles import build_error
from ..registered import build_source, recorded_manifest
from ..replicated import ReplicatedProvider
from ..rollout import Rollout
from ..routing import RoutingTable
from .builds import BuildFailed, BuildRequest, LocalBuilder
from .logs import read_logs
from .mlflow_server import MlflowServers
from .runtime import SupervisorRuntime


class LocalProvider(ReplicatedProvider):
    name = "local"
    kinds = frozenset({"build", "deployment", "proxy", "registry"})
    build_computed = ("path",)

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.root = Path(context.data_dir)
        self.spec_dir = Path(context.spec_dir)
        self.builder = LocalBuilder(self.root)
        self.routes = RoutingTable(self.root / "run" / "routes.json", context.salt)
        self.runtime = SupervisorRuntime(self.root, self.builder, self.routes.path)
        self.rollout = Rollout(self.runtime, self.routes)
        self.registries = MlflowServers(self.runtime, self.spec_dir)

    async def build_exists(self, attributes: Attributes) -> bool:
        model_key = str(attributes.get("model", "")).removeprefix("model.")
        build_hash, path = attributes.get("hash"), attributes.get("path")
        return (
            self.builder.existing(
                model_key,
                int(attributes.get("number", 0)),
                str(build_hash) if build_hash else None,
                str(path) if path else None,
            )
            is not None
        )

    # -- managed model registries (mlflow server programs); the rest is ReplicatedProvider's ---------

    async def read(self, request: ReadRequest) -> ReadResult:
        registries = [ref for ref in request.resources if ref.kind == "registry"]
        others = [ref for ref in request.resources if ref.kind != "registry"]
        result = await super().read(request.model_copy(update={"resources": tuple(others)})) if others else ReadResult(live={})
        live = dict(result.live)
        for ref in registries:
            live[ref.address] = await self.registries.read(dict(ref.attributes))
        return ReadResult(live=live)

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.kind == "registry":
            return self.registries.plan(request)
        return await super().plan(request)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.kind == "registry":
            return await self.registries.apply(request)
        return await super().apply(request)

    # -- optional abilities -----------------------------------------------------------------------

    def logs(self, request: LogRequest) -> AsyncIterator[LogLine]:
        """supervisord's log files of the deployment's replicas (also replaced ones), its build's log."""
        return read_logs(self.root, request)

    async def collect_garbage(self, keep: set[str]) -> list[str]:
        """Remove build folders whose address is not in ``keep``, then venvs no build uses."""
        removed: list[str] = []
        for build_dir in sorted(self.builder.builds_dir.glob("*/*/*")):
            if not build_dir.is_dir() or not build_dir.name.isdigit():
                continue
            model_key = f"{build_dir.parent.parent.name}/{build_dir.parent.name}"
            address = f"build.{model_key}#{int(build_dir.name)}"
            if address in keep:
                continue
            await asyncio.to_thread(self.builder.remove_build, model_key, int(build_dir.name))
            removed.append(f"build folder {build_dir} ({address})")
        venvs = await asyncio.to_thread(self.builder.remove_unused_venvs, set())
        removed += [f"venv {self.builder.venvs_dir / key}" for key in venvs]
        return removed

    # -- builds -----------------------------------------------------------------------------------

    async def apply_build(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            prior = request.prior or {}
            model_key = str(prior.get("model", "")).removeprefix("model.")
            await asyncio.to_thread(self.builder.remove_build, model_key, int(prior.get("number", 0)))
            return ApplyResult(attributes=None)
        planned = request.planned
        check(request.address, "build", planned)
        async with build_source(self.spec_dir, self.root, request.address, planned, request.progress) as inputs:
            build_request = BuildRequest(**inputs.request_fields(planned, request.progress))
            try:
                outcome = await asyncio.to_thread(self.builder.build, build_request)
            except BuildFailed as exc:
                raise build_error(request.address, exc) from None
        return ApplyResult(
            attributes={**planned, "path": str(outcome.build_dir), **recorded_manifest(planned, inputs)}
        )
