"""What the specs ask for, as graph nodes whose attributes are computed from their dependencies.

Attribute values that depend on other resources (a model's access key hash in its deployment, API
key hashes in the proxy) are read from ``known``: planned values while planning, applied values
while applying, so apply always hands the provider what is really there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CmlplanError
from ..providers.base import UnsupportedError
from ..providers.source import FileEntry, build_hash, collect_manifest, parse_requirements
from ..specs import Config, Resource
from ..specs.common import Lifecycle
from ..specs.model import ModelSpec
from ..specs.proxy import ProxySpec
from ..state.document import StateDocument
from ..values import UNKNOWN
from .addresses import build_address, deployment_address, model_of
from .envrefs import fingerprint_value, resolve

Known = Mapping[str, dict[str, Any] | None]
LOGICAL = "cmlplan"


@dataclass
class Node:
    address: str
    kind: str
    provider: str
    dependencies: tuple[str, ...]
    compute: Callable[[Known], dict[str, Any]]
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    secrets: Callable[[], dict[str, str]] = field(default=lambda: {})
    notes: tuple[str, ...] = ()


class SourceMissingError(CmlplanError):
    """A model's source file or requirements file is not where the spec says."""


@dataclass
class DesiredWorld:
    nodes: dict[str, Node]
    warnings: list[str]


def desired_world(
    config: Config,
    state: StateDocument | None,
    salt: str,
    provider: str,
    environ: Mapping[str, str] | None = None,
) -> DesiredWorld:
    """Every node the specs imply, including each model's build and deployment."""
    builder = _Builder(config, state, salt, provider, environ)
    builder.run()
    return DesiredWorld(builder.nodes, builder.warnings)


class _Builder:
    def __init__(
        self, config: Config, state: StateDocument | None, salt: str, provider: str, environ: Mapping[str, str] | None
    ) -> None:
        self.config = config
        self.state = state
        self.salt = salt
        self.provider = provider
        self.environ = environ
        self.nodes: dict[str, Node] = {}
        self.warnings: list[str] = []
        self._manifests: dict[Path, dict[str, FileEntry]] = {}
        self._history = _builds_by_model(state)
        proxies = config.of_kind("Proxy")
        self._proxy_spec: ProxySpec = proxies[0].spec if proxies else ProxySpec()
        self._excluded = {Path(f) for f in config.files}

    def run(self) -> None:
        for resource in self.config.resources.values():
            if resource.kind == "Project":
                self._project(resource)
            elif resource.kind == "ApiKey":
                self._apikey(resource)
            elif resource.kind == "Model":
                self._model(resource)
            elif resource.kind == "ModelRegistry":
                self._add(resource.address, "registry", self.provider, (), _constant(resource.spec.model_dump(mode="json")), resource.lifecycle)
        self._proxy()

    def _add(self, address: str, kind: str, provider: str, deps: tuple[str, ...], compute: Callable[[Known], dict[str, Any]], lifecycle: Lifecycle | None = None, **extra: Any) -> None:
        self.nodes[address] = Node(address, kind, provider, deps, compute, lifecycle or Lifecycle(), **extra)

    def _project(self, resource: Resource) -> None:
        spec = resource.spec
        attributes = {"description": spec.description, "collaborators": dict(sorted(spec.collaborators.items()))}
        self._add(resource.address, "project", LOGICAL, (), _constant(attributes), resource.lifecycle)

    def _apikey(self, resource: Resource) -> None:
        spec = resource.spec
        attributes: dict[str, Any] = {
            "user": spec.user,
            "expires_in": spec.expires_in,
            "expires_at": spec.expires_at.isoformat() if spec.expires_at else None,
            "value_ref": spec.value,
        }
        secrets: Callable[[], dict[str, str]] = lambda: {}  # noqa: E731
        if spec.value:
            where = f"{resource.origin}: {resource.address}: value"
            attributes["key_hash"] = fingerprint_value(self.salt, spec.value, where, self.environ)
            value = spec.value
            secrets = lambda: {"value": resolve(value, where, self.environ)}  # noqa: E731
        self._add(resource.address, "apikey", LOGICAL, (), _constant(attributes), resource.lifecycle, secrets=secrets)

    def _model(self, resource: Resource) -> None:
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
        self._add(address, "model", LOGICAL, deps, _constant(model_attributes), resource.lifecycle)
        if spec.source.registered is not None:
            raise UnsupportedError(
                f"{resource.origin}: {address}: serving a registered model version is not supported yet"
                f" by provider {self.provider!r}"
            )
        number, build_node = self._build(resource, name)
        deployment = deployment_address(name)
        deps = (address, build_address(name, number))
        self._add(
            deployment,
            "deployment",
            self.provider,
            deps,
            self._deployment_compute(resource, name, number, build_node),
            _deployment_lifecycle(resource.lifecycle),
            secrets=self._deployment_secrets(resource),
        )

    def _build(self, resource: Resource, name: str) -> tuple[int, dict[str, Any]]:
        spec: ModelSpec = resource.spec
        address = resource.address
        root = (Path(resource.base_dir) / spec.source.path).resolve()
        where = f"{resource.origin}: {address}"
        if not root.is_dir():
            raise SourceMissingError(f"{where}: source.path {spec.source.path!r} is not a folder ({root})")
        manifest = self._manifest(root)
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
            "source_path": _relative(root, Path(self.config.directory)),
            "file": spec.source.file,
            "function": spec.source.function,
            "python": spec.runtime.python,
            "requirements_file": spec.runtime.requirements,
            "requirements": requirements,
            "build_script": spec.build.script,
            "manifest": {path: {"sha256": e.sha256, "size": e.size, "lines": e.lines} for path, e in manifest.items()},
        }
        history = self._history.get(address, {})
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
        number = _next_build_number(self.state, address, history)
        attributes["number"] = number
        previous = history[max(history)] if history else None
        self._add(
            build_address(name, number),
            "build",
            self.provider,
            (address,),
            _constant(attributes),
            notes=tuple(build_notes(previous, attributes)),
        )
        return number, attributes

    def _manifest(self, root: Path) -> dict[str, FileEntry]:
        if root not in self._manifests:
            manifest = collect_manifest(root, self.warnings.append)
            self._manifests[root] = {
                path: entry for path, entry in manifest.items() if (root / path) not in self._excluded
            }
        return self._manifests[root]

    def _deployment_compute(
        self, resource: Resource, name: str, number: int, build: dict[str, Any]
    ) -> Callable[[Known], dict[str, Any]]:
        spec: ModelSpec = resource.spec
        env = {**self.config.workspace_spec.env, **spec.deployment.env}
        where = f"{resource.origin}: {resource.address}: deployment.env"
        fingerprints = {
            key: fp for key, value in env.items() if (fp := fingerprint_value(self.salt, value, f"{where}.{key}", self.environ))
        }
        address = resource.address
        # Replicas stop a prediction that outlives the proxy's request_timeout, so they need it too.
        request_timeout = self._proxy_spec.request_timeout

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
            }

        return compute

    def _deployment_secrets(self, resource: Resource) -> Callable[[], dict[str, str]]:
        env = {**self.config.workspace_spec.env, **resource.spec.deployment.env}
        where = f"{resource.origin}: {resource.address}: deployment.env"

        def secrets() -> dict[str, str]:
            return {f"env.{k}": resolve(v, f"{where}.{k}", self.environ) for k, v in env.items() if v.startswith("${env:")}

        return secrets

    def _proxy(self) -> None:
        proxies = self.config.of_kind("Proxy")
        resource = proxies[0] if proxies else None
        spec: ProxySpec = resource.spec if resource else ProxySpec()
        address = resource.address if resource else "proxy.default"
        apikeys = sorted(a for a, n in self.nodes.items() if n.kind == "apikey")
        projects = sorted(a for a, n in self.nodes.items() if n.kind == "project")
        deployments = sorted(a for a, n in self.nodes.items() if n.kind == "deployment")

        def compute(known: Known) -> dict[str, Any]:
            keys = {}
            for key_address in apikeys:
                attrs = known.get(key_address) or {}
                keys[key_address.split(".", 1)[1]] = {
                    "user": attrs.get("user", UNKNOWN),
                    "key_hash": attrs.get("key_hash", UNKNOWN),
                    "expires": attrs.get("expires", UNKNOWN),
                }
            roles = {p.split(".", 1)[1]: dict((known.get(p) or {}).get("collaborators", {})) for p in projects}
            return {
                "host": spec.host,
                "port": spec.port,
                "replicas": spec.replicas,
                "busy_timeout": spec.busy_timeout,
                "request_timeout": spec.request_timeout,
                "max_request_bytes": spec.max_request_size,
                "header_timeout": spec.header_timeout,
                "body_timeout": spec.body_timeout,
                "keepalive_timeout": spec.keepalive_timeout,
                "api_keys": keys,
                "projects": roles,
            }

        self._add(
            address,
            "proxy",
            self.provider,
            tuple(apikeys + projects + deployments),
            compute,
            resource.lifecycle if resource else None,
        )


def build_notes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What a new build changes against the previous one, in words a reviewer reads."""
    if previous is None:
        files = current.get("manifest", {})
        return [f"first build: {len(files)} file{'s' if len(files) != 1 else ''}"]
    notes: list[str] = []
    before, after = previous.get("manifest", {}), current.get("manifest", {})
    parts = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            parts.append(f"+{path} ({_lines(new)})")
        elif new is None:
            parts.append(f"-{path}")
        elif old.get("sha256") != new.get("sha256"):
            if old.get("lines") is not None and new.get("lines") is not None:
                parts.append(f"~{path} ({old['lines']} -> {new['lines']} lines)")
            else:
                parts.append(f"~{path} ({old.get('size')} -> {new.get('size')} bytes)")
    if parts:
        notes.append("files: " + ", ".join(parts))
    old_req, new_req = previous.get("requirements", {}), current.get("requirements", {})
    req_parts = []
    for name in sorted(set(old_req) | set(new_req)):
        if name not in old_req:
            req_parts.append(f"+{name}{new_req[name]}")
        elif name not in new_req:
            req_parts.append(f"-{name}{old_req[name]}")
        elif old_req[name] != new_req[name]:
            req_parts.append(f"{name} {old_req[name].lstrip('=') or '*'} -> {new_req[name].lstrip('=') or '*'}")
    if req_parts:
        notes.append("requirements: " + ", ".join(req_parts))
    for key, label in (("function", "function"), ("file", "file"), ("python", "python"), ("build_script", "build script")):
        if previous.get(key) != current.get(key):
            notes.append(f"{label}: {previous.get(key)} -> {current.get(key)}")
    return notes


def _deployment_lifecycle(lifecycle: Lifecycle) -> Lifecycle:
    """The Model's lifecycle as its deployment reads it: ignore_changes `deployment.replicas` names
    the deployment's own `replicas` attribute."""
    paths = tuple(path.removeprefix("deployment.") for path in lifecycle.ignore_changes)
    return lifecycle.model_copy(update={"ignore_changes": paths})


def _lines(entry: dict[str, Any]) -> str:
    return f"{entry['lines']} lines" if entry.get("lines") is not None else f"{entry.get('size')} bytes"


def _constant(attributes: dict[str, Any]) -> Callable[[Known], dict[str, Any]]:
    return lambda _known: attributes


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base.resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _builds_by_model(state: StateDocument | None) -> dict[str, dict[int, dict[str, Any]]]:
    """Every recorded build, by model address then number: one pass over the state."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    if state is None:
        return found
    for address, resource in state.resources.items():
        if resource.kind == "build":
            found.setdefault(model_of(address), {})[int(address.rsplit("#", 1)[1])] = resource.attributes
    return found


def _next_build_number(state: StateDocument | None, model: str, history: dict[int, dict[str, Any]]) -> int:
    numbers = [0, *history]
    if state is not None:
        numbers += [record.number for record in state.builds.get(model, [])]
    return max(numbers) + 1
