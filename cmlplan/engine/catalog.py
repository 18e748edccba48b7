"""`cmlplan models` and `cmlplan history`: what the state says about every model and every apply.

Read from the state alone (no provider is asked), so both work while a registry or a replica is
down; the status reflects what the last apply or refresh recorded.
"""

from __future__ import annotations

from typing import Any

from ..errors import CmlplanError
from ..state.document import StateDocument
from .addresses import build_address, deployment_address, parse_address


def model_rows(state: StateDocument | None) -> list[dict[str, Any]]:
    """One row per model: project, source, build, deployment id, replicas, status, who applied it and when."""
    if state is None:
        return []
    rows = []
    for address, resource in sorted(state.resources.items()):
        if resource.kind != "model":
            continue
        key = address.split(".", 1)[1]
        attributes = resource.attributes
        deployment = state.resources.get(deployment_address(key))
        deployed = deployment.attributes if deployment is not None else {}
        build_number = deployed.get("build")
        build = state.resources.get(build_address(key, int(build_number))) if isinstance(build_number, int) else None
        processes = [p for p in deployed.get("processes") or [] if isinstance(p, dict) and not p.get("orphan")]
        wanted = deployed.get("replicas")
        latest = _latest(state, [address, deployment_address(key)])
        rows.append(
            {
                "address": address,
                "project": attributes.get("project"),
                "name": attributes.get("name"),
                "source": describe_source(attributes, build.attributes if build is not None else None),
                "build": build_number,
                "build_hash": deployed.get("build_hash"),
                "deployment_id": deployed.get("deployment_id"),
                "replicas": {"running": len(processes), "wanted": wanted},
                "status": _status(deployment is not None, deployed, len(processes)),
                "applied_by": latest.by if latest else None,
                "applied_at": latest.at.isoformat() if latest else None,
            }
        )
    return rows


def history_rows(state: StateDocument | None, text: str) -> list[dict[str, Any]]:
    """Every recorded apply that changed ``text`` (a model address includes its deployment and builds)."""
    address = str(parse_address(text))
    if state is None:
        raise CmlplanError(f"{text}: no state yet, so no history")
    wanted = {address}
    if address.startswith("model."):
        key = address.split(".", 1)[1]
        wanted.add(deployment_address(key))
        wanted |= {a for a in state.history if a.startswith(f"build.{key}#")}
    rows = [
        {"address": a, **entry.model_dump(mode="json")} for a in wanted for entry in state.history.get(a, [])
    ]
    if not rows and address not in state.resources:
        raise CmlplanError(f"{text}: no such resource in the state, and no history for it")
    return sorted(rows, key=lambda r: (r["at"], r["serial"], r["address"]))


def describe_source(model: dict[str, Any], build: dict[str, Any] | None) -> str:
    source = model.get("source") or {}
    registered = source.get("registered")
    if isinstance(registered, dict):
        pinned = (build or {}).get("registered") or {}
        version = pinned.get("version", registered.get("version"))
        alias = f" (alias {registered['alias']})" if registered.get("alias") else ""
        return f"registered {registered.get('name')} v{version}{alias} in {registered.get('registry')}"
    return f"{source.get('file')}:{source.get('function')}"


def _status(deployed: bool, attributes: dict[str, Any], running: int) -> str:
    if not deployed:
        return "not deployed"
    if attributes.get("stopped"):
        return "stopped"
    wanted = attributes.get("replicas") or 0
    if running >= wanted:
        return "running"
    return "degraded" if running else "down"


def _latest(state: StateDocument, addresses: list[str]) -> Any:
    entries = [e for a in addresses for e in state.history.get(a, [])]
    return max(entries, key=lambda e: (e.at, e.serial)) if entries else None
