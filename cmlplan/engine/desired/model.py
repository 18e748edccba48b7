"""Model: the model itself (state only), its build (a new one when source or dependencies change)
and its deployment (the provider runs it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import CmlplanError
from ...providers.base import UnsupportedError
from ...providers.source import FileEntry, build_hash, collect_manifest, parse_requirements
from ...specs import Resource
from ...specs.common import Lifecycle
from ...specs.model import ModelSpec
from ...state.document import StateDocument
from ...values import UNKNOWN
from ..addresses import build_address, deployment_address
from ..envrefs import fingerprint_value, resolve
from .notes import build_notes
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
    deps: tuple[str, ...] = (f"project.{resource.metadata.project}",)
    if spec.source.registered is not None:
        deps += (f"registry.{spec.source.registered.registry}",)
    b.add(address, "model", LOGICAL, deps, constant(model_attributes), resource.lifecycle)
    if spec.source.registered is not None:
        raise UnsupportedError(
            f"{resource.origin}: {address}: serving a registered model version is not supported yet"
            f" by provider {b.provider!r}"
        )
    number, build_node = _build(b, resource, name)
    deployment = deployment_address(name)
    deps = (address, build_address(name, number))
    b.add(
        deployment,
        "deployment",
        b.provider,
        deps,
        _deployment_compute(b, resource, name, number, build_node),
        _deployment_lifecycle(resource.lifecycle),
        secrets=_deployment_secrets(b, resource),
    )


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
    if spec.build.script and spec.build.script not in manifest:
        raise SourceMissingError(f"{where}: build.script {spec.build.script!r} is not in the source folder {root}")
    requirements = parse_requirements(requirements_text)
    digest = build_hash(manifest, spec.source.function or "", spec.runtime.python, requirements, spec.build.script)
    attributes = {
        "model": address,
        "hash": digest,
        "source_path": _relative(root, Path(b.config.directory)),
        "file": spec.source.file,
        "function": spec.source.function,
        "python": spec.runtime.python,
        "requirements_file": spec.runtime.requirements,
        "requirements": requirements,
        "build_script": spec.build.script,
        "manifest": {path: {"sha256": e.sha256, "size": e.size, "lines": e.lines} for path, e in manifest.items()},
    }
    history = b.history.get(address, {})
    pinned = spec.deployment.build
    existing = next((number for number, attrs in history.items() if attrs.get("hash") == digest), None)
    if pinned is not None:
        if pinned not in history:
            known = ", ".join(str(n) for n in sorted(history)) or "none yet"
            raise CmlplanError(
                f"{resource.origin}: {address}: deployment.build {pinned} does not exist (builds: {known})"
            )
        return pinned, history[pinned]
    if existing is not None:
        return existing, history[existing]
    number = _next_build_number(b.state, address, history)
    attributes["number"] = number
    previous = history[max(history)] if history else None
    b.add(
        build_address(name, number),
        "build",
        b.provider,
        (address,),
        constant(attributes),
        notes=tuple(build_notes(previous, attributes)),
    )
    return number, attributes


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
    fingerprints = {
        key: fp for key, value in env.items() if (fp := fingerprint_value(b.salt, value, f"{where}.{key}", b.environ))
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


def _next_build_number(state: StateDocument | None, model: str, history: dict[int, dict[str, Any]]) -> int:
    numbers = [0, *history]
    if state is not None:
        numbers += [record.number for record in state.builds.get(model, [])]
    return max(numbers) + 1
