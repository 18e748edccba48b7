"""`cmlplan restart`: roll a deployment's replicas through its provider and record it in state."""

from __future__ import annotations

from typing import Any

from ..errors import CmlplanError
from ..providers.base import ApplyRequest, Progress, Restarting
from ..state.history import applier_identity, history_entry
from ..state.recorder import StateRecorder
from .addresses import deployment_address, parse_address
from .planner import PlanOptions
from .session import Session


async def restart_deployment(session: Session, text: str, progress: Progress) -> dict[str, Any]:
    """Restart the replicas of ``text`` (a model or its deployment); returns the recorded attributes.

    The specs must have nothing left to apply for it: a restart keeps build and deployment id, so
    pending changes would be left unapplied while looking applied. The caller holds the lock.
    """
    address = parse_address(text)
    if address.kind not in ("model", "deployment"):
        raise CmlplanError(f"{text}: restart takes a model or deployment address, e.g. model.numbers/add")
    target = deployment_address(address.name)
    resource = session.document.resources.get(target)
    if resource is None:
        raise CmlplanError(f"{text}: {target} is not in the state; apply first")
    provider = session.providers.get(resource.provider)
    if not isinstance(provider, Restarting):
        raise CmlplanError(f"{text}: the {resource.provider} provider cannot restart replicas")
    run = await session.plan(PlanOptions(targets=(target,)))
    pending = [c.address for c in run.plan.changes if c.action.changes]
    if pending:
        raise CmlplanError(f"{text}: changes are pending for {', '.join(pending)}; apply them instead of restarting")
    node = run.nodes.get(target)
    before = dict(resource.attributes)
    outcome = await provider.restart(
        ApplyRequest(
            address=target, kind="deployment", prior=before, planned=before,
            secrets=node.secrets() if node is not None else {}, progress=progress,
        )
    )
    after = outcome.attributes or before
    document = session.document
    document.set_resource(target, resource.model_copy(update={"attributes": after}))
    document.add_history(target, history_entry("deployment", "restart", before, after, document.serial + 1, applier_identity()))
    recorder = StateRecorder(session.workspace.backend)
    try:
        await recorder.save(document)
    finally:
        await recorder.close(document)
    return after
