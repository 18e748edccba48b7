"""Typed attributes per resource kind: what engine, state and providers pass around, declared once.

Attributes travel as JSON-shaped dicts (state, plans and requests keep them so); these frozen
models say what each kind's attributes are. ``check`` validates a dict (state on load, requests on
apply) and names the first bad field; ``parse`` returns the typed model. Values still "known after
apply" are dropped before validation, so a plan's half-known attributes check too. Providers may
add facts of their own (a container id, an image id): extra fields are kept, declared ones are typed.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..values import UNKNOWN
from .base import ProviderError


class AttributesError(ProviderError):
    """Attributes of the wrong shape; the message is ``<address>: <field>: <problem>``."""


class _Attributes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    kind: ClassVar[str] = ""
    computed: ClassVar[tuple[str, ...]] = ()  # what only apply knows, whatever the provider


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class ManifestEntry(_Record):
    sha256: str
    size: int = Field(ge=0)
    lines: int | None = None


class ProcessRecord(_Record):
    """One replica or proxy process as recorded (providers add facts: port, pid, container_id...)."""

    name: str
    index: int | None = None
    orphan: bool = False
    replica_id: str | None = None
    url: str | None = None
    port: int | None = None
    pid: int | None = None
    container_id: str | None = None
    image_id: str | None = None
    env_hash: str | None = None


class ProjectAttributes(_Attributes):
    kind = "project"
    description: str | None = None
    collaborators: dict[str, str] = Field(default_factory=dict)


class ApiKeyAttributes(_Attributes):
    kind = "apikey"
    computed = ("key_hash", "created_at", "expires")
    user: str | None = None
    expires_in: float | None = None
    expires_at: str | None = None
    value_ref: str | None = None
    key_hash: str | None = None
    created_at: str | None = None
    expires: str | None = None


class ModelAttributes(_Attributes):
    kind = "model"
    computed = ("access_key_hash",)
    project: str | None = None
    name: str | None = None
    description: str | None = None
    title: str | None = None  # metadata.description
    source: dict[str, Any] = Field(default_factory=dict)
    runtime: dict[str, Any] = Field(default_factory=dict)
    build_script: str | None = None
    authentication: bool = True
    examples: list[dict[str, Any]] = Field(default_factory=list)
    access_key_hash: str | None = None


class BuildAttributes(_Attributes):
    kind = "build"
    computed = ("path",)
    model: str
    number: int = Field(ge=1)
    hash: str
    source_path: str | None = None
    file: str | None = None
    function: str | None = None
    python: str | None = None
    requirements_file: str | None = None
    requirements: dict[str, str] = Field(default_factory=dict)
    build_script: str | None = None
    manifest: dict[str, ManifestEntry] = Field(default_factory=dict)
    path: str | None = None


class Autoscaling(_Record):
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    target_in_flight: float | None = None
    cpu: int | None = None


class DeploymentAttributes(_Attributes):
    kind = "deployment"
    computed = ("processes",)
    model: str
    project: str
    name: str
    build: int = Field(ge=1)
    build_hash: str | None = None
    file: str | None = None
    function: str | None = None
    replicas: int = Field(ge=0)
    cpu: float | None = None
    memory: int | None = None
    request_timeout: float | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_fingerprints: dict[str, str] = Field(default_factory=dict)
    stopped: bool = False
    authentication: bool = True
    access_key_hash: str | None = None
    examples: list[dict[str, Any]] = Field(default_factory=list)
    deployment_id: int | None = None
    gpus: int = Field(0, ge=0)
    autoscale: Autoscaling | None = None
    processes: list[ProcessRecord] | None = None


class ApiKeyRoute(_Record):
    user: str | None = None
    key_hash: str | None = None
    expires: str | None = None


class MetricsStore(_Record):
    """A PostgreSQL metrics store: the DSN's ${env:NAME} reference and a salted fingerprint of its value."""

    dsn_ref: str
    dsn_fingerprint: str


class ProxyAttributes(_Attributes):
    kind = "proxy"
    computed = ("processes",)
    host: str
    port: int = Field(ge=1, le=65535)
    replicas: int = Field(1, ge=1)
    busy_timeout: float
    request_timeout: float
    max_request_bytes: int = Field(ge=1)
    header_timeout: float | None = Field(None, gt=0)  # None in states written before read deadlines existed
    body_timeout: float | None = Field(None, gt=0)
    keepalive_timeout: float | None = Field(None, gt=0)
    api_keys: dict[str, ApiKeyRoute] = Field(default_factory=dict)
    projects: dict[str, dict[str, str]] = Field(default_factory=dict)
    processes: list[ProcessRecord] | None = None
    # the Workspace's metrics settings, present only when not at their defaults
    metrics_store: MetricsStore | None = None
    metrics_retention_days: int | None = Field(None, ge=1)
    technical_flush_seconds: float | None = Field(None, gt=0)


class RegistryAttributes(_Attributes):
    kind = "registry"
    computed = ("uri", "processes")
    mode: str | None = None  # managed (cmlplan runs it) or external (by URI)
    uri: str | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    processes: list[ProcessRecord] | None = None


ATTRIBUTES: dict[str, type[_Attributes]] = {
    model.kind: model
    for model in (
        ProjectAttributes, ApiKeyAttributes, ModelAttributes, BuildAttributes, DeploymentAttributes,
        ProxyAttributes, RegistryAttributes,
    )
}

T = TypeVar("T", bound=_Attributes)


def known_only(value: Any) -> Any:
    """``value`` without entries still "known after apply" (they cannot be typed yet)."""
    if isinstance(value, dict):
        return {k: known_only(v) for k, v in value.items() if v != UNKNOWN}
    if isinstance(value, list):
        return [known_only(v) for v in value if v != UNKNOWN]
    return value


def problem(kind: str, attributes: Any) -> str | None:
    """The first problem of ``attributes`` for ``kind`` as ``field: message``, or None when they fit."""
    model = ATTRIBUTES.get(kind)
    if model is None:
        return None
    if not isinstance(attributes, dict):
        return "must be an object"
    try:
        model.model_validate(known_only(attributes))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        return f"{path or 'attributes'}: {first['msg']}"
    return None


def check(address: str, kind: str, attributes: Any) -> None:
    """Raise AttributesError naming ``address`` and the field unless ``attributes`` fit ``kind``."""
    found = problem(kind, attributes)
    if found is not None:
        raise AttributesError(f"{address}: {found}")


def parse(model: type[T], address: str, attributes: dict[str, Any]) -> T:
    """The typed attributes of ``address``; AttributesError (one line) when they do not fit."""
    check(address, model.kind, attributes)
    return model.model_validate(known_only(attributes))
