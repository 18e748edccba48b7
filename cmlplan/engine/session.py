"""One session per command: it opens the workspace's providers, plans, applies, releases what a
killed or failed run left, collects garbage, and closes the providers whatever happened.

Every front end (the CLI's plan, apply, destroy and gc, tests, benchmarks) goes through it, so the
providers' lifecycle is written once.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from ..providers.base import GarbageCollecting, Provider, ReleasingLeftovers
from ..state.document import StateDocument
from ..state.recorder import StateRecorder
from .applier import ApplyReport, apply_run
from .collection import collector_paused
from .desired import LOGICAL
from .events import ApplyEvents
from .keys import FingerprintKeyError
from .openlineage import LineageEmitter
from .planner import PlannedRun, PlanOptions, make_plan

if TYPE_CHECKING:
    from .workspace import Workspace


class Session:
    """``async with Session(workspace, state) as session: run = await session.plan(options) ...``"""

    def __init__(self, workspace: Workspace, state: StateDocument | None) -> None:
        self.workspace = workspace
        self.state = state
        self.document = state if state is not None else StateDocument.new(workspace.name)
        recorded = {r.provider for r in self.document.resources.values()}
        self.providers: dict[str, Provider] = workspace.providers(self.document, recorded)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()

    async def plan(self, options: PlanOptions) -> PlannedRun:
        workspace = self.workspace
        with collector_paused():
            return await make_plan(
                config=workspace.config,
                state=self.document,
                state_exists=self.state is not None,
                providers=self.providers,
                provider_name=workspace.provider_name,
                options=options,
                specs_hash=workspace.specs_hash(),
                workspace_id=workspace.name,
                keys=workspace.keys,
                environ=workspace.environ,
                shared_state=workspace.backend.shared,
            )

    async def apply(
        self, run: PlannedRun, events: ApplyEvents, parallelism: int = 10, stop: asyncio.Event | None = None
    ) -> ApplyReport:
        """Carry out ``run`` (the caller holds the lock); a clean run then releases leftovers.

        Refused, before anything runs, when the plan could not compare some secret values (no
        fingerprint key, or another one): applying would miss their changes.
        """
        refuse_uncompared(run)
        changed = [c.address for c in run.plan.changes if c.action.changes]
        lineage = LineageEmitter(self.workspace.config.workspace_spec.openlineage, self.workspace.directory, self.workspace.name)
        if changed and (problem := await asyncio.to_thread(lineage.start, changed)):
            events.progress("openlineage", problem)
        recorder = StateRecorder(self.workspace.backend)  # one durable write per batch of finished actions
        try:
            report = await apply_run(
                run, run.document, self.providers, recorder.save, events, self.workspace.keys, parallelism, stop
            )
        finally:
            await recorder.close(run.document)
        if not report.state_error:
            report.upgraded = len(run.plan.upgraded)
        for old, new in run.plan.moved_models:
            if old not in run.document.resources:  # the rename is saved: the key file follows it
                self.workspace.keys.rename(old, new)
        if changed and (problem := await asyncio.to_thread(lineage.finish, report.ok, changed, run.document)):
            events.progress("openlineage", problem)
        if report.ok:
            for address, lines in (await self.release_leftovers(run.document)).items():
                for line in lines:
                    events.progress(address, f"removed {line}")
        return report

    async def release_leftovers(self, document: StateDocument | None = None) -> dict[str, list[str]]:
        """Remove what providers run but state does not record (a killed run's replicas, a proxy
        started by a first apply that failed), and their supervisor when nothing is recorded.

        Only safe when state is up to date: after a clean apply, after destroy, or on its own under
        the lock. Returns {provider name: lines describing what was removed}.
        """
        doc = document if document is not None else self.document
        removed: dict[str, list[str]] = {}
        for name, provider in self.providers.items():
            if name == LOGICAL or not isinstance(provider, ReleasingLeftovers):
                continue
            recorded = {
                str(process.get("name"))
                for resource in doc.resources.values()
                if resource.provider == name
                for process in (resource.attributes.get("processes") or [])
                if isinstance(process, dict)
            }
            lines = await provider.release_leftovers(recorded)
            if lines:
                removed[name] = lines
        return removed

    async def collect_garbage(self) -> dict[str, list[str]]:
        """Let each provider that keeps build artifacts remove those no recorded build uses, and
        release what no state records. Returns {provider name: lines}; the caller holds the lock."""
        keep = {address for address, resource in self.document.resources.items() if resource.kind == "build"}
        removed: dict[str, list[str]] = {}
        for name, lines in (await self.release_leftovers()).items():
            removed.setdefault(name, []).extend(lines)
        for name, provider in self.providers.items():
            if isinstance(provider, GarbageCollecting):
                removed.setdefault(name, []).extend(await provider.collect_garbage(keep))
        return removed


def refuse_uncompared(run: PlannedRun) -> None:
    """Refuse to apply a plan that could not compare some secret values: it would miss their changes."""
    if run.fingerprint_problem and not run.plan.destroy:
        raise FingerprintKeyError(f"cannot apply: {run.fingerprint_problem}")
