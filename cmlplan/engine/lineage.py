"""`cmlplan lineage`: training data -> experiment run -> registered version -> build -> deployment
-> proxy route, read from the state (builds of registered models keep what the plan resolved).

The graph is plain data (``Lineage``: nodes and edges), rendered as text, Graphviz dot or JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import CmlplanError
from ..secrets import key_label
from ..state.document import StateDocument
from .addresses import build_address, deployment_address, parse_address


@dataclass
class Lineage:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"kind", "label", ...facts}
    edges: list[tuple[str, str]] = field(default_factory=list)  # (from, to): data flows from -> to

    def add(self, node_id: str, kind: str, label: str, **facts: Any) -> str:
        self.nodes.setdefault(node_id, {"kind": kind, "label": label, **facts})
        return node_id

    def link(self, source: str, target: str) -> None:
        if (source, target) not in self.edges:
            self.edges.append((source, target))

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [{"id": k, **v} for k, v in self.nodes.items()],
            "edges": [{"from": a, "to": b} for a, b in self.edges],
        }


def lineage_of(state: StateDocument | None, text: str | None = None) -> Lineage:
    """The lineage of one model (``model.`` or ``deployment.`` address) or of every model."""
    graph = Lineage()
    if state is None:
        return graph
    models = sorted(a for a, r in state.resources.items() if r.kind == "model")
    if text:
        address = str(parse_address(text))
        key = address.split(".", 1)[1].split("#", 1)[0]
        models = [a for a in models if a == f"model.{key}"]
        if not models:
            raise CmlplanError(f"{text}: no such model in the state")
    proxy = next((r.attributes for r in state.resources.values() if r.kind == "proxy"), None)
    for model in models:
        _add_model(graph, state, model, proxy)
    return graph


def _add_model(graph: Lineage, state: StateDocument, model: str, proxy: dict[str, Any] | None) -> None:
    key = model.split(".", 1)[1]
    attributes = state.resources[model].attributes
    deployment = state.resources.get(deployment_address(key))
    deployed = deployment.attributes if deployment is not None else {}
    number = deployed.get("build")
    build = state.resources.get(build_address(key, int(number))) if isinstance(number, int) else None
    built = build.attributes if build is not None else {}
    data = [
        graph.add(f"data:{d.get('path')}", "dataset", str(d.get("path")), hash=d.get("hash"), declared_in="spec")
        for d in (attributes.get("lineage") or {}).get("training_data") or []
    ]
    registered = built.get("registered") if isinstance(built.get("registered"), dict) else None
    upstream: str | None = None
    if registered:
        for dataset in registered.get("datasets") or []:
            data.append(
                graph.add(
                    f"data:{dataset.get('name')}@{dataset.get('digest')}", "dataset", str(dataset.get("name")),
                    digest=dataset.get("digest"), source=dataset.get("source"), context=dataset.get("context"),
                    declared_in="mlflow",
                )
            )
        run = None
        if registered.get("run_id"):
            run = graph.add(
                f"run:{registered['run_id']}", "run", f"run {registered['run_id']}",
                run_id=registered["run_id"], run_name=registered.get("run_name"),
                experiment_id=registered.get("experiment_id"), params=registered.get("params") or {},
                metrics=registered.get("metrics") or {}, registry=registered.get("registry"),
            )
            for item in data:
                graph.link(item, run)
        upstream = graph.add(
            f"version:{registered.get('name')}/{registered.get('version')}", "registered_version",
            f"{registered.get('name')} version {registered.get('version')}",
            name=registered.get("name"), version=registered.get("version"), alias=registered.get("alias"),
            artifact_digest=registered.get("artifact_digest"), registry_uri=registered.get("uri"),
        )
        if run:
            graph.link(run, upstream)
        else:
            for item in data:
                graph.link(item, upstream)
    else:
        source = attributes.get("source") or {}
        upstream = graph.add(
            f"source:{key}", "source", f"{source.get('file')}:{source.get('function')}",
            path=source.get("path"), files=len(built.get("manifest") or {}),
        )
        for item in data:
            graph.link(item, upstream)
    if build is None:
        return
    build_node = graph.add(
        build_address(key, int(number)), "build", f"build #{number}", number=number, hash=built.get("hash"),
    )
    graph.link(upstream, build_node)
    processes = [p for p in deployed.get("processes") or [] if isinstance(p, dict) and not p.get("orphan")]
    deployment_node = graph.add(
        deployment_address(key), "deployment", f"deployment {deployed.get('deployment_id')}",
        deployment_id=deployed.get("deployment_id"), replicas=deployed.get("replicas"), running=len(processes),
        stopped=bool(deployed.get("stopped")),
    )
    graph.link(build_node, deployment_node)
    if proxy is not None:
        host = proxy.get("host") or "127.0.0.1"
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{proxy.get('port')}/model"
        route = graph.add(
            f"route:{key}", "route", f"POST {url} ({key})", url=url, model=model,
            access_key=key_label(attributes.get("access_key_hash")), authentication=attributes.get("authentication"),
        )
        graph.link(deployment_node, route)


def render_text(graph: Lineage) -> str:
    """One chain per line group: each node with its facts, indented under what it came from."""
    if not graph.nodes:
        return "No lineage: nothing is recorded in the state yet.\n"
    children: dict[str, list[str]] = {}
    has_parent = set()
    for source, target in graph.edges:
        children.setdefault(source, []).append(target)
        has_parent.add(target)
    lines: list[str] = []

    def visit(node_id: str, depth: int, seen: frozenset[str]) -> None:
        node = graph.nodes[node_id]
        lines.append(f"{'  ' * depth}{'-> ' if depth else ''}{node['kind']}: {node['label']}{_facts(node)}")
        for child in children.get(node_id, []):
            if child not in seen:
                visit(child, depth + 1, seen | {child})

    for root in graph.nodes:
        if root not in has_parent:
            visit(root, 0, frozenset({root}))
    return "\n".join(lines) + "\n"


def render_dot(graph: Lineage) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
    for node_id, node in graph.nodes.items():
        lines.append(f"  {json.dumps(node_id)} [label={json.dumps(node['kind'] + chr(10) + node['label'])}];")
    for source, target in graph.edges:
        lines.append(f"  {json.dumps(source)} -> {json.dumps(target)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _facts(node: dict[str, Any]) -> str:
    shown = []
    for key, value in node.items():
        if key in ("kind", "label") or value in (None, {}, [], ""):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_short(v)}" for k, v in sorted(value.items()))
        shown.append(f"{key}: {_short(value) if not isinstance(value, str) else value}")
    return f" ({'; '.join(shown)})" if shown else ""


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
