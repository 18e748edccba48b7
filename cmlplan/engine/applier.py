"""Applying: walk the changes in dependency order, call providers, write state after each one.

On a failure, what is running finishes, the failed resource's dependents are skipped and
independent branches carry on; running apply again converges. A stop event (Ctrl-C) lets in-flight
actions finish and save state, then ends the walk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..dag import Graph, walk
from ..errors import CmlplanError
from ..plan import Action
from ..providers.base import ApplyRequest, PlanRequest, Provider
from ..state.document import BuildRecord, ResourceState, StateDocument, StateError
from ..state.history import applier_identity, history_entry
from ..values import UNKNOWN
from .addresses import model_of
from .events import ApplyEvents
from .keys import KeyFolder
from .planner import PlannedRun


@dataclass
class ApplyReport:
    done: dict[str, str] = field(default_factory=dict)  # address -> action
    failed: dict[str, str] = field(default_factory=dict)  # address -> one-line error
    skipped: dict[str, str] = field(default_factory=dict)  # address -> the failure that blocked it
    not_started: list[str] = field(default_factory=list)
    seconds: float = 0.0
    state_error: str | None = None  # a state write failed: nothing new was started after it
    upgraded: int = 0  # resources whose recorded fingerprints were rewritten in today's form

    @property
    def ok(self) -> bool:
        return not (self.failed or self.skipped or self.not_started)


async def apply_run(
    run: PlannedRun,
    document: StateDocument,
    providers: Mapping[str, Provider],
    save: Callable[[StateDocument], Awaitable[object]],
    events: ApplyEvents,
    keys: KeyFolder,
    parallelism: int = 10,
    stop: asyncio.Event | None = None,
) -> ApplyReport:
    """Carry out ``run`` against ``document`` (the locked, current state), saving after each action.

    ``save`` stages what changed when called (in order, under the write lock) and is awaited
    outside it, so actions finishing together share one durable write.
    """
    started = time.monotonic()
    changes = {c.address: c for c in run.plan.changes if c.action.changes}
    known: dict[str, dict[str, Any] | None] = dict(run.current)
    write_lock = asyncio.Lock()
    report = ApplyReport()
    # Set when a state write fails: what would be done after it could not be recorded (and would be
    # left running, unknown to state), so nothing new starts; in-flight actions finish.
    halt = asyncio.Event()
    working = asyncio.Semaphore(max(1, parallelism))
    held_back: list[str] = []  # claimed by the walk, but the halt came before their turn
    who = applier_identity()

    for change in run.plan.changes:
        if not change.action.changes and change.before is not None and run.plan.refresh:
            _record(document, change.address, change.kind, run.providers_of[change.address], change.before, run.dependencies.get(change.address, ()))
    if not changes:
        await save(document)
        report.seconds = time.monotonic() - started
        return report

    graph: Graph[str] = Graph()
    for address in changes:
        graph.add_node(address)
    for address, change in changes.items():
        if change.action is Action.DELETE:
            for other, _other_change in changes.items():
                if address in run.prior_dependencies.get(other, ()) and other != address:
                    graph.add_edge(address, other)  # dependents go first
        else:
            for dep in run.dependencies.get(address, ()):
                if dep in changes and changes[dep].action is not Action.DELETE:
                    graph.add_edge(address, dep)

    async def act(address: str) -> tuple[Awaitable[object], Any, float]:
        """The provider's part of an action, then its state change staged; returns what to await."""
        change = changes[address]
        provider = providers[run.providers_of[address]]
        node = run.nodes.get(address)
        events.started(address, change.action.value)
        began = time.monotonic()
        try:
            planned = None
            if change.action is not Action.DELETE:
                if node is None:
                    desired = change.after
                else:
                    desired = node.compute(known)
                    if change.kind == "deployment":
                        fresh = change.action in (Action.CREATE, Action.REPLACE, Action.CREATE_THEN_DELETE)
                        deployment_id = (change.before or {}).get("deployment_id")
                        if fresh:
                            deployment_id = await _allocate_deployment_id(document, save, write_lock)
                        desired = {**desired, "deployment_id": deployment_id}
                result = await provider.plan(
                    PlanRequest(address=address, kind=change.kind, current=change.before, desired=desired)
                )
                planned = result.planned
                _check_known(address, planned, result.computed)
            secrets = node.secrets() if node is not None and planned is not None else {}
            outcome = await provider.apply(
                ApplyRequest(
                    address=address,
                    kind=change.kind,
                    prior=None if change.action is Action.CREATE else change.before,
                    planned=planned,
                    replace=change.action in (Action.REPLACE, Action.CREATE_THEN_DELETE),
                    secrets=secrets,
                    progress=lambda message: events.progress(address, message),
                )
            )
        except CmlplanError as exc:
            events.failed(address, change.action.value, str(exc))
            raise
        except Exception as exc:
            events.failed(address, change.action.value, f"{type(exc).__name__}: {exc}")
            raise
        known[address] = outcome.attributes
        async with write_lock:
            entry = history_entry(
                change.kind, change.action.value, change.before, outcome.attributes, document.serial + 1, who
            )
            document.add_history(address, entry, deleted=outcome.attributes is None)
            if outcome.attributes is None:
                document.remove_resource(address)
                if change.kind in ("model", "apikey"):
                    keys.remove(address)
            else:
                _record(document, address, change.kind, run.providers_of[address], outcome.attributes, run.dependencies.get(address, ()))
                if change.kind == "build":
                    document.add_build(
                        model_of(address),
                        BuildRecord(number=int(address.rsplit("#", 1)[1]), hash=str(outcome.attributes.get("hash"))),
                    )
            durable = save(document)
        return durable, outcome, began

    async def visit(address: str) -> None:
        # Only provider work counts against parallelism: waiting for the state write does not hold
        # a slot, so the next actions run while a batch syncs (their dependents still wait for it).
        async with working:
            if halt.is_set():
                held_back.append(address)
                return
            durable, outcome, began = await act(address)
        change = changes[address]
        try:
            await durable
        except StateError as exc:
            report.state_error = report.state_error or str(exc)
            halt.set()
            events.failed(address, change.action.value, f"{change.action.value} done, but {exc}")
            raise
        for name, secret in outcome.secrets.items():
            path = keys.write(address, secret)
            events.key_created(address, str(path), secret)
            del name
        report.done[address] = change.action.value
        events.finished(address, change.action.value, time.monotonic() - began)

    follow = asyncio.create_task(_follow(stop, halt)) if stop is not None else None
    try:
        result = await walk(graph, visit, parallelism=max(1, parallelism) + _WAITING_FOR_STATE, stop=halt)
    finally:
        if follow is not None:
            follow.cancel()
    for address, error in result.failed.items():
        message = str(error) if isinstance(error, CmlplanError) else f"{type(error).__name__}: {error}"
        report.failed[address] = message.removeprefix(f"{address}: ")  # the report is keyed by address
    for address in result.skipped:
        report.skipped[address] = result.root_cause(address)
    report.not_started = [*held_back, *result.not_started]
    report.seconds = time.monotonic() - started
    return report


# Actions that may wait for their state write while others run: enough to fill a batch while one syncs.
_WAITING_FOR_STATE = 256


async def _follow(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    halt.set()


def _check_known(address: str, planned: dict[str, Any] | None, computed: tuple[str, ...]) -> None:
    """Only what the provider declares it computes may still be unknown when apply starts."""
    if planned is None:
        return
    for key, value in planned.items():
        if value == UNKNOWN and key not in computed:
            raise CmlplanError(f"{address}: {key} is still unknown at apply time (a dependency was not applied)")


async def _allocate_deployment_id(
    document: StateDocument, save: Callable[[StateDocument], Awaitable[object]], write_lock: asyncio.Lock
) -> int:
    """A new deployment id, durably recorded before anything starts under it.

    A run killed after this point leaves replicas named after an id no later run hands out again,
    so the next apply sees them as orphans instead of taking them for its own.
    """
    async with write_lock:
        deployment_id = document.next_id("deployment")
        durable = save(document)
    await durable
    return deployment_id


def _record(
    document: StateDocument, address: str, kind: str, provider: str, attributes: dict[str, Any], dependencies: tuple[str, ...]
) -> None:
    existing = document.resources.get(address)
    resource = ResourceState(kind=kind, provider=provider, attributes=attributes, dependencies=list(dependencies))
    if existing is not None:
        resource = resource.model_copy(update={"created_at": existing.created_at})
    document.set_resource(address, resource)
