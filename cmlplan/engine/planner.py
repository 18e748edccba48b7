"""Planning: specs (desired) vs state (prior) vs provider.read (live) -> changes with reasons.

Planning never writes: it reads state, reads the live world and asks providers what they would
set. The result keeps what apply needs (the graph, each node's refreshed attributes) beside the
Plan that people and machines read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..dag import CycleError, Graph
from ..errors import CmlplanError
from ..plan import Action, ActionReason, Drift, Plan, ResourceChange, decide_action
from ..plan.drift import counts_as_drift
from ..providers.base import PlanRequest, Provider, ReadRequest, ResourceRef
from ..specs.common import Lifecycle
from ..state.document import StateDocument
from ..values import UNKNOWN
from .addresses import kind_of, model_of, parse_address
from .desired import LOGICAL, Node, desired_world
from .fingerprints import SecretFingerprints, apply_upgrades
from .keys import KeyFolder
from .moves import apply_move, moves_of, pending_moves

KIND_ORDER = {"registry": 0, "project": 1, "apikey": 2, "model": 3, "build": 4, "deployment": 5, "proxy": 6}


class PlanError(CmlplanError):
    """The plan cannot be made as asked (bad -target, prevent_destroy, a cycle)."""


@dataclass(frozen=True)
class PlanOptions:
    destroy: bool = False
    refresh: bool = True
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()


@dataclass
class PlannedRun:
    """A Plan plus what apply needs to carry it out."""

    plan: Plan
    document: StateDocument  # the state planned against (new and unsaved when there was none)
    nodes: dict[str, Node]
    current: dict[str, dict[str, Any] | None]  # refreshed attributes by address
    providers_of: dict[str, str]  # address -> provider name
    dependencies: dict[str, tuple[str, ...]]  # new dependencies of each address
    prior_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # secret values this plan could not compare (no fingerprint key, or another one): apply refuses
    fingerprint_problem: str | None = None


async def make_plan(
    *,
    config: Any,
    state: StateDocument,
    state_exists: bool,
    providers: Mapping[str, Provider],
    provider_name: str,
    options: PlanOptions,
    specs_hash: str,
    workspace_id: str,
    keys: KeyFolder,
    environ: Mapping[str, str] | None = None,
    shared_state: bool = False,
) -> PlannedRun:
    document = state
    moved: list[tuple[str, str]] = []
    if not options.destroy:
        for move in pending_moves(moves_of(config), document):
            moved.extend(sorted(apply_move(move, document).items()))
    fingerprints = SecretFingerprints(
        keys, os.environ if environ is None else environ, document.salt, document, _replaced(options.replace),
        may_create=not shared_state,
    )
    world = (
        desired_world(config, state, document.salt, provider_name, environ, fingerprints, options.targets)
        if not options.destroy
        else None
    )
    # older fingerprint forms rewritten in state (in memory, saved by apply): nothing running changes
    upgraded = apply_upgrades(document, fingerprints.upgrades) if world else []
    nodes = world.nodes if world else {}
    # destroy builds no nodes, but the specs' lifecycle rules (prevent_destroy) still hold
    spec_lifecycles = _spec_lifecycles(config) if options.destroy else {}
    prior = document.resources
    addresses = set(nodes) | set(prior)
    desired_models = {a for a, n in nodes.items() if n.kind == "model"}

    dependencies: dict[str, tuple[str, ...]] = {}
    graph: Graph[str] = Graph()
    for address in addresses:
        graph.add_node(address)
    for address in addresses:
        deps = nodes[address].dependencies if address in nodes else tuple(prior[address].dependencies)
        dependencies[address] = tuple(d for d in deps if d in addresses)
        for dep in dependencies[address]:
            graph.add_edge(address, dep)
    try:
        order = graph.topological_order()
    except CycleError as exc:
        raise PlanError(f"dependency cycle: {exc}") from None

    replace = _replace_targets(options.replace, addresses)
    selected = _selected(graph, options.targets, addresses)

    providers_of = {a: (nodes[a].provider if a in nodes else prior[a].provider) for a in addresses}
    for address in selected:
        if providers_of[address] not in providers:
            raise PlanError(
                f"{address}: recorded with provider {providers_of[address]!r}, which is not configured"
            )
    for address in sorted(a for a in selected if a in nodes):
        problem = nodes[address].problem()
        if problem:
            raise PlanError(problem)
    for address in sorted(selected):
        kind = nodes[address].kind if address in nodes else prior[address].kind
        _check_kind(address, kind, providers[providers_of[address]])
    current = await _refresh(prior, selected, providers, providers_of, options.refresh)

    known: dict[str, dict[str, Any] | None] = {a: current.get(a) for a in addresses}
    changes: list[ResourceChange] = []
    drift: list[Drift] = []
    for address in order:
        if address not in selected:
            continue
        node = nodes.get(address)
        kind = node.kind if node else prior[address].kind
        prior_attributes = dict(prior[address].attributes) if address in prior else None
        now = current.get(address)
        if node is not None:
            desired = node.compute(known)
            if kind == "deployment":
                desired = {**desired, "deployment_id": (now or {}).get("deployment_id", UNKNOWN)}
        elif kind == "build" and model_of(address) in desired_models and now is not None:
            desired = now  # an earlier build, kept for rollback until `cmlplan gc`
        else:
            desired = None
        provider = providers[providers_of[address]]
        result = await provider.plan(PlanRequest(address=address, kind=kind, current=now, desired=desired))
        lifecycle = node.lifecycle if node else spec_lifecycles.get(address, Lifecycle())
        drifted = prior_attributes is not None and now != prior_attributes
        decision = decide_action(
            current=now,
            planned=result.planned,
            in_state=prior_attributes is not None,
            requires_replace=result.requires_replace,
            create_before_destroy=result.create_before_destroy,
            replace_requested=address in replace,
            ignore_changes=lifecycle.ignore_changes,
            drifted=drifted
            and result.planned is not None
            and _same(prior_attributes, result.planned, lifecycle, result.computed),
            destroying=options.destroy,
        )
        if kind == "build" and decision.action is Action.CREATE and _rebuild(node):
            decision = dataclasses.replace(decision, reason=ActionReason.CREATE_BECAUSE_NEW_BUILD)
        planned = result.planned
        if decision.action in (Action.REPLACE, Action.CREATE_THEN_DELETE) and desired is not None:
            # a replacement is a new object: plan it as one, so computed values show as unknown
            if kind == "deployment":
                desired = {**desired, "deployment_id": UNKNOWN}
            fresh = await provider.plan(PlanRequest(address=address, kind=kind, current=None, desired=desired))
            planned = fresh.planned
        known[address] = planned if decision.action is not Action.DELETE else None
        if (
            decision.action in (Action.DELETE, Action.REPLACE)
            and lifecycle.prevent_destroy
        ):
            raise PlanError(
                f"{address}: lifecycle.prevent_destroy is set, but this plan would destroy it"
                f" ({decision.action.value}); remove prevent_destroy first if that is really wanted"
            )
        changes.append(
            ResourceChange(
                address=address,
                kind=kind,
                action=decision.action,
                reason=decision.reason,
                before=now,
                after=planned if decision.action is not Action.DELETE else None,
                replace_paths=decision.replace_paths,
                dependencies=dependencies[address],
                notes=node.notes if node and _shows_notes(node, decision.action) else (),
                ignored_paths=lifecycle.ignore_changes,
            )
        )
        if options.refresh and prior_attributes is not None and now != prior_attributes:
            found = Drift(address, kind, prior_attributes, now)
            if counts_as_drift(found, lifecycle.ignore_changes):  # as -refresh-only: ignored is not drift
                drift.append(found)

    changes.sort(key=lambda c: (KIND_ORDER.get(c.kind, 9), c.address))
    drift.sort(key=lambda d: (KIND_ORDER.get(d.kind, 9), d.address))
    plan = Plan(
        changes=tuple(changes),
        drift=tuple(drift),
        workspace_id=workspace_id,
        lineage=state.lineage if state_exists else None,
        serial=state.serial if state_exists else None,
        specs_hash=specs_hash,
        destroy=options.destroy,
        refresh=options.refresh,
        targets=options.targets,
        replace=options.replace,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cmlplan_version=__version__,
        warnings=tuple([*(world.warnings if world else ()), *fingerprints.notes(selected)]),
        moved=tuple(moved),
        upgraded=tuple(upgraded),
    )
    return PlannedRun(
        plan=plan,
        document=document,
        nodes=nodes,
        current=current,
        providers_of=providers_of,
        dependencies=dependencies,
        prior_dependencies={a: tuple(r.dependencies) for a, r in prior.items()},
        fingerprint_problem=fingerprints.problem(selected),
    )


_KIND_NAMES = {"registry": "ModelRegistry", "project": "Project", "apikey": "ApiKey", "model": "Model", "proxy": "Proxy"}


def _check_kind(address: str, kind: str, provider: Provider) -> None:
    """Refuse, before anything runs, a resource whose provider does not declare its kind."""
    if kind in provider.kinds:
        return
    served = ", ".join(sorted(provider.kinds)) or "nothing"
    hint = "; run mlflow server elsewhere and give the registry its uri: instead" if kind == "registry" else ""
    raise PlanError(
        f"{address}: {_KIND_NAMES.get(kind, kind)} is not supported by provider {provider.name!r}"
        f" (it manages: {served}){hint}"
    )


def _spec_lifecycles(config: Any) -> dict[str, Lifecycle]:
    """Lifecycle rules by address, as the desired nodes would carry them (a Model's also cover its deployment)."""
    found: dict[str, Lifecycle] = {}
    for address, resource in config.resources.items():
        found[address] = resource.lifecycle
        if resource.kind == "Model":
            found["deployment." + address.split(".", 1)[1]] = resource.lifecycle
    return found


def _shows_notes(node: Node, action: Action) -> bool:
    """A new build's notes say what it changes; a deployment's (which registered version goes
    live) matter whenever it changes."""
    return action is Action.CREATE or (node.kind == "deployment" and action.changes)


def _rebuild(node: Node | None) -> bool:
    """A build that follows an earlier one of the same model (its notes compare the two)."""
    return node is not None and bool(node.notes) and not node.notes[0].startswith("first build")


def _same(
    prior: dict[str, Any] | None, planned: dict[str, Any], lifecycle: Lifecycle, computed: tuple[str, ...] = ()
) -> bool:
    """Whether the specs still ask for what was last applied (so a change is drift alone).

    What the provider computes (it declares it, e.g. a deployment's processes) or plans as unknown
    is not something the specs ask for, so it is left out of the comparison.
    """
    unknown = {key for key, value in planned.items() if value == UNKNOWN} | set(computed)
    if prior is not None and unknown:
        prior = {k: v for k, v in prior.items() if k not in unknown}
        planned = {k: v for k, v in planned.items() if k not in unknown}
    return (
        decide_action(
            current=prior, planned=planned, in_state=True, ignore_changes=lifecycle.ignore_changes
        ).action
        is Action.NOOP
    )


def _replaced(requested: Sequence[str]) -> frozenset[str]:
    """The addresses -replace names (their fingerprints are made anew); bad ones fail later, in one line."""
    found = set()
    for text in requested:
        try:
            found.add(str(parse_address(text)))
        except CmlplanError:
            continue
    return frozenset(found)


def _replace_targets(requested: Sequence[str], addresses: set[str]) -> set[str]:
    found = set()
    for text in requested:
        address = parse_address(text)
        if address.attribute not in (None, "access_key"):
            raise PlanError(
                f"-replace {text}: only .access_key may follow an address (to regenerate a model's key)"
            )
        if address.attribute == "access_key" and address.kind != "model":
            raise PlanError(f"-replace {text}: .access_key belongs to model addresses")
        if str(address) not in addresses:
            raise PlanError(f"-replace {text}: no such resource in the specs or the state")
        found.add(str(address))
    return found


def _selected(graph: Graph[str], targets: Sequence[str], addresses: set[str]) -> set[str]:
    if not targets:
        return set(addresses)
    chosen = []
    for text in targets:
        address = str(parse_address(text))
        if address not in addresses:
            raise PlanError(f"-target {text}: no such resource in the specs or the state")
        chosen.append(address)
    return set(graph.ancestors(chosen))


async def _refresh(
    prior: Mapping[str, Any],
    selected: set[str],
    providers: Mapping[str, Provider],
    providers_of: Mapping[str, str],
    refresh: bool,
) -> dict[str, dict[str, Any] | None]:
    current: dict[str, dict[str, Any] | None] = {}
    by_provider: dict[str, list[ResourceRef]] = {}
    for address, resource in prior.items():
        if address not in selected:
            continue
        attributes = dict(resource.attributes)
        current[address] = attributes
        if refresh and providers_of[address] != LOGICAL:
            by_provider.setdefault(providers_of[address], []).append(
                ResourceRef(address=address, kind=resource.kind, attributes=attributes)
            )
    for name, refs in by_provider.items():
        result = await providers[name].read(ReadRequest(resources=tuple(refs)))
        for address, live in result.live.items():
            if address in current:
                current[address] = live
    return current


def specs_fingerprint(files: Sequence[str]) -> str:
    """A hash of the spec files' bytes, so a saved plan can tell the specs moved."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


__all__ = [
    "KIND_ORDER",
    "PlanError",
    "PlanOptions",
    "PlannedRun",
    "kind_of",
    "make_plan",
    "specs_fingerprint",
]
