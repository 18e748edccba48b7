"""Model: the model itself (state only), its build (a new one when source or dependencies change)
and its deployment (the provider runs it)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import CmlplanError
from ...providers.source import FileEntry, build_hash, collect_manifest, parse_requirements
from ...specs import Resource, env_reference
from ...specs.common import Lifecycle
from ...specs.model import ModelSpec
from ...values import UNKNOWN
from ..addresses import build_address, deployment_address
from ..envrefs import resolve
from .builds import choose_build
from .notes import build_notes
from .registered import deployment_notes, registered_build
from .world import LOGICAL, Builder, Known, SourceMissingError, constant


def add_model(b: Builder, resource: Resource) -> None:
    spec: ModelSpec = resource.spec
    name = f"{resource.metadata.project}/{resource.metadata.name}"
    address = resource.address
    model_attributes = {
        "project": resource.metadata.project,
        "name": resource.metadata.name,
        "description": spec.description,
        "source": spec.source.model_dump(mode="json", exclude_none=True),
        "runtime": spec.runtime.model_dump(mode="json"),
        "build_script": spec.build.script,
        "authentication": spec.authentication,
        "examples": [e.model_dump(mode="json") for e in spec.examples],
    }
    if resource.metadata.description is not None:  # for people, never in the address; absent when unset
        model_attributes["title"] = resource.metadata.description
    if spec.lineage.training_data:
        model_attributes["lineage"] = {"training_data": training_data(resource)}
    deps: tuple[str, ...] = (f"project.{resource.metadata.project}",)
    if spec.source.registered is not None:
        deps += (f"registry.{spec.source.registered.registry}",)
    b.add(address, "model", LOGICAL, deps, constant(model_attributes), resource.lifecycle)
    notes: tuple[str, ...] = ()
    summary: dict[str, Any] | None = None
    if spec.source.registered is not None:
        if not b.builds_needed(address):
            return  # its recorded build and deployment stay as they are, unplanned
        try:
            number, build_node, resolved = registered_build(b, resource, name)
        except CmlplanError as exc:
            b.nodes[address].blocked = str(exc)  # fails the plan only when the model is planned
            return
        notes, summary = deployment_notes(b, resource, resolved), resolved.summary()
    else:
        number, build_node = _build(b, resource, name)
    deployment = deployment_address(name)
    deps = (address, build_address(name, number))
    compute = _deployment_compute(b, resource, name, number, build_node)
    b.add(
        deployment,
        "deployment",
        b.provider,
        deps,
        compute if summary is None else _with_registered(compute, summary),
        _deployment_lifecycle(resource.lifecycle),
        secrets=_deployment_secrets(b, resource),
        notes=notes,
    )


def training_data(resource: Resource) -> list[dict[str, Any]]:
    """The spec's lineage.training_data, a local file's sha256 filled in when no hash is given."""
    found = []
    for item in resource.spec.lineage.training_data:
        digest = item.hash
        path = Path(resource.base_dir) / item.path
        if digest is None and "://" not in item.path and path.is_file():
            digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        found.append({"path": item.path, "hash": digest})
    return found


def _with_registered(
    compute: Callable[[Known], dict[str, Any]], summary: dict[str, Any]
) -> Callable[[Known], dict[str, Any]]:
    return lambda known: {**compute(known), "registered": summary}


def _build(b: Builder, resource: Resource, name: str) -> tuple[int, dict[str, Any]]:
    spec: ModelSpec = resource.spec
    address = resource.address
    root = (Path(resource.base_dir) / spec.source.path).resolve()
    where = f"{resource.origin}: {address}"
    if not root.is_dir():
        raise SourceMissingError(f"{where}: source.path {spec.source.path!r} is not a folder ({root})")
    manifest = _manifest(b, root)
    if spec.source.file not in manifest:
        raise SourceMissingError(f"{where}: source.file {spec.source.file!r} is not in the source folder {root}")
    requirements_text = ""
    if spec.runtime.requirements:
        if spec.runtime.requirements not in manifest:
            raise SourceMissingError(
                f"{where}: runtime.requirements {spec.runtime.requirements!r} is not in the source folder {root}"
            )
        requirements_text = (root / spec.runtime.requirements).read_text(encoding="utf-8", errors="replace")
    script = spec.build.script_in(manifest)  # cdsw-build.sh at the root runs unless named otherwise or none
    if script and script not in manifest:
        raise SourceMissingError(f"{where}: build.script {script!r} is not in the source folder {root}")
    requirements = parse_requirements(requirements_text)
    digest = build_hash(manifest, spec.source.function or "", spec.runtime.python, requirements, script)
    attributes = {
        "model": address,
        "hash": digest,
        "source_path": _relative(root, Path(b.config.directory)),
        "file": spec.source.file,
        "function": spec.source.function,
        "python": spec.runtime.python,
        "requirements_file": spec.runtime.requirements,
        "requirements": requirements,
        "build_script": script,
        "manifest": {path: {"sha256": e.sha256, "size": e.size, "lines": e.lines} for path, e in manifest.items()},
    }
    return choose_build(b, resource, name, digest, attributes, build_notes)


def _manifest(b: Builder, root: Path) -> dict[str, FileEntry]:
    if root not in b.manifests:
        manifest = collect_manifest(root, b.warnings.append)
        b.manifests[root] = {
            path: entry for path, entry in manifest.items() if (root / path) not in b.excluded
        }
    return b.manifests[root]


def _deployment_compute(
    b: Builder, resource: Resource, name: str, number: int, build: dict[str, Any]
) -> Callable[[Known], dict[str, Any]]:
    spec: ModelSpec = resource.spec
    env = {**b.config.workspace_spec.env, **spec.deployment.env}
    where = f"{resource.origin}: {resource.address}: deployment.env"
    deployment = deployment_address(name)
    fingerprints = {
        key: b.fingerprints.of(deployment, ("env_fingerprints", key), resolve(value, f"{where}.{key}", b.environ))
        for key, value in env.items()
        if env_reference(value) is not None
    }
    address = resource.address
    # Replicas stop a prediction that outlives the proxy's request_timeout, so they need it too.
    request_timeout = b.proxy_spec.request_timeout

    # only when asked for, so the deployments of older state files plan no change
    extras: dict[str, Any] = {}
    if spec.deployment.gpus:
        extras["gpus"] = spec.deployment.gpus
    if spec.deployment.autoscale is not None:
        extras["autoscale"] = spec.deployment.autoscale.model_dump(mode="json", exclude_none=True)

    def compute(known: Known) -> dict[str, Any]:
        model = known.get(address) or {}
        return {
            "model": address,
            "project": resource.metadata.project,
            "name": resource.metadata.name,
            "build": number,
            "build_hash": build.get("hash"),
            "file": build.get("file"),
            "function": build.get("function"),
            "replicas": spec.deployment.replicas,
            "cpu": spec.deployment.cpu,
            "memory": spec.deployment.memory,
            "request_timeout": request_timeout,
            "env": dict(sorted(env.items())),
            "env_fingerprints": dict(sorted(fingerprints.items())),
            "stopped": spec.deployment.stopped,
            "authentication": spec.authentication,
            "access_key_hash": model.get("access_key_hash", UNKNOWN),
            "examples": [e.model_dump(mode="json") for e in spec.examples],
            **extras,
        }

    return compute


def _deployment_secrets(b: Builder, resource: Resource) -> Callable[[], dict[str, str]]:
    env = {**b.config.workspace_spec.env, **resource.spec.deployment.env}
    where = f"{resource.origin}: {resource.address}: deployment.env"

    def secrets() -> dict[str, str]:
        return {f"env.{k}": resolve(v, f"{where}.{k}", b.environ) for k, v in env.items() if v.startswith("${env:")}

    return secrets


def _deployment_lifecycle(lifecycle: Lifecycle) -> Lifecycle:
    """The Model's lifecycle as its deployment reads it: ignore_changes `deployment.replicas` names
    the deployment's own `replicas` attribute."""
    paths = tuple(path.removeprefix("deployment.") for path in lifecycle.ignore_changes)
    return lifecycle.model_copy(update={"ignore_changes": paths})


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base.resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()
