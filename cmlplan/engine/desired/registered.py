"""A Model whose source is a registered MLflow model version: resolve it, then plan its build.

The plan asks the registry what ``version: N`` or ``alias: champion`` points at now, and pins
that: the build hash covers the version, its run and its artifact digest, so an alias that moved
is a new build and a planned replace of the deployment, shown as "version 3 -> 4 (alias champion
moved)", never a silent one. A registry that does not answer, or a version that does not exist,
blocks the model: the plan fails in one line and nothing running is touched.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...providers.base import UnsupportedError
from ...providers.registered import SHIM_FILE, SHIM_FUNCTION, SHIM_VERSION
from ...providers.source import parse_requirements
from ...registry.client import RegistryClient
from ...registry.errors import RegistryError
from ...registry.requirements import serving_requirements
from ...registry.resolved import ResolvedVersion
from ...specs import Resource
from ...specs.model import ModelSpec
from ..addresses import deployment_address
from .builds import choose_build
from .notes import build_notes
from .world import Builder

REGISTERED_BUILDS = frozenset({"local", "docker"})  # providers whose builds download registered versions


def registered_build(b: Builder, resource: Resource, name: str) -> tuple[int, dict[str, Any], ResolvedVersion]:
    """Resolve the registered version and choose its build; RegistryError (one line) when it cannot."""
    spec: ModelSpec = resource.spec
    source = spec.source.registered
    assert source is not None
    where = f"{resource.origin}: {resource.address}"
    if b.provider not in REGISTERED_BUILDS:
        raise UnsupportedError(
            f"{where}: serving a registered model version is not supported yet by provider {b.provider!r}"
            f" (supported by: {', '.join(sorted(REGISTERED_BUILDS))})"
        )
    uri = registry_uri(b, source.registry, where)
    try:
        resolved = RegistryClient(source.registry, uri, where).resolve(source.name, source.version, source.alias)
    except RegistryError as exc:
        spec = b.config.resources.get(f"registry.{source.registry}")
        if "does not answer" in str(exc) and spec is not None and not spec.spec.uri:
            raise RegistryError(f"{exc}; if it is stopped, start it: cmlplan apply -target registry.{source.registry}") from None
        raise
    if resolved.python and resolved.python != spec.runtime.python:
        b.warnings.append(
            f"{where}: {source.name} version {resolved.version} was logged with python {resolved.python};"
            f" it is served on runtime.python {spec.runtime.python}"
        )
    requirements = parse_requirements(serving_requirements(resolved.requirements_text))
    attributes = {
        "model": resource.address,
        "hash": registered_hash(resolved, spec.runtime.python, requirements),
        "source_path": None,
        "file": SHIM_FILE,
        "function": SHIM_FUNCTION,
        "python": spec.runtime.python,
        "requirements_file": "requirements.txt",
        "requirements": requirements,
        "build_script": None,
        "registered": resolved.attributes(),
    }
    number, chosen = choose_build(b, resource, name, attributes["hash"], attributes, registered_notes)
    return number, chosen, resolved


def registry_uri(b: Builder, registry: str, where: str) -> str:
    """Where registry ``registry`` answers: its spec URI, or what state recorded for a managed one."""
    resource = b.config.resources.get(f"registry.{registry}")
    if resource is not None and resource.spec.uri:
        return str(resource.spec.uri).rstrip("/")
    recorded = b.state.resources.get(f"registry.{registry}") if b.state is not None else None
    uri = (recorded.attributes.get("uri") if recorded is not None else None) or None
    if not isinstance(uri, str):
        raise RegistryError(
            f"{where}: registry.{registry} is not running yet; apply it first (cmlplan apply -target"
            f" registry.{registry}), register the model, then plan again"
        )
    return uri


def registered_hash(resolved: ResolvedVersion, python: str, requirements: dict[str, str]) -> str:
    """Same version, run, artifacts, python and requirements: the same build (no rebuild)."""
    inputs = {
        "registered": [resolved.name, resolved.version, resolved.run_id, resolved.artifact_digest],
        "python": python,
        "requirements": requirements,
        "shim": SHIM_VERSION,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def registered_notes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What a new registered build is, against the model's previous build."""
    now = current.get("registered") or {}
    what = f"{now.get('name')} version {now.get('version')}"
    detail = f"run {now.get('run_id')}, artifacts {now.get('artifact_digest')}"
    if previous is None:
        return [f"first build: registered {what}, {detail}"]
    before = previous.get("registered") or {}
    if not before:
        notes = [f"source: file {previous.get('file')} -> registered {what}, {detail}"]
    else:
        notes = [f"registered {before.get('name')} {_move(before, now)}, {detail}"]
    notes += [n for n in build_notes(previous, current) if n.startswith("requirements:") or n.startswith("python:")]
    return notes


def deployment_notes(b: Builder, resource: Resource, resolved: ResolvedVersion) -> tuple[str, ...]:
    """Which registered version the deployment takes live, against the one it serves now."""
    name = f"{resource.metadata.project}/{resource.metadata.name}"
    recorded = b.state.resources.get(deployment_address(name)) if b.state is not None else None
    before = (recorded.attributes.get("registered") if recorded is not None else None) or {}
    now = resolved.summary()
    if not isinstance(before, dict) or not before:
        return (f"serves registered {resolved.name} version {resolved.version}, run {resolved.run_id}",)
    if before.get("version") == now["version"] and before.get("artifact_digest") == now["artifact_digest"]:
        return ()
    return (f"registered {resolved.name} {_move(before, now)}, run {resolved.run_id}",)


def _move(before: dict[str, Any], now: dict[str, Any]) -> str:
    """``version 3 -> 4 (alias champion moved)``, or ``(pinned)`` when a version is asked for."""
    text = f"version {before.get('version')} -> {now.get('version')}"
    if now.get("alias"):
        if before.get("alias") == now.get("alias"):
            return f"{text} (alias {now['alias']} moved)"
        return f"{text} (now following alias {now['alias']})"
    return f"{text} (pinned to version {now.get('version')})"
