"""ModelRegistry: an MLflow server cmlplan runs (managed, on the workspace's provider, which must
declare the kind) or an external one reached by URI (recorded only; the plan checks it answers).

No secret reaches the attributes: a PostgreSQL DSN or S3 keys are kept as their ${env:NAME}
references plus keyed fingerprints (so a changed password shows in the plan); the resolved
values travel to the provider as apply-time secrets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...registry.client import health_problem
from ...specs import Resource, env_reference
from ...specs.registry import ModelRegistrySpec
from ..envrefs import resolve
from .world import LOGICAL, Builder, constant

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def add_registry(b: Builder, resource: Resource) -> None:
    spec: ModelRegistrySpec = resource.spec
    if spec.uri:
        uri = spec.uri.rstrip("/")
        where = f"{resource.origin}: {resource.address}"

        def answers() -> str | None:  # asked only when a planned resource needs the registry
            problem = health_problem(uri)
            return f"{where}: the external registry at {uri} does not answer ({problem})" if problem else None

        attributes = {"mode": "external", "uri": uri}
        b.add(resource.address, "registry", LOGICAL, (), constant(attributes), resource.lifecycle, check=answers)
        return
    where = f"{resource.origin}: {resource.address}"
    b.add(
        resource.address,
        "registry",
        b.provider,
        (),
        constant(managed_attributes(b, resource.name, spec, where)),
        resource.lifecycle,
        secrets=_secrets(b, spec, where),
    )


def managed_attributes(b: Builder, name: str, spec: ModelRegistrySpec, where: str) -> dict[str, Any]:
    """What the provider runs: paths relative to the spec folder, secrets as references."""
    base = f".cmlplan/registry/{name}"
    backend: dict[str, Any] = {"type": "sqlite", "path": f"{base}/mlflow.db"}
    if spec.backend_store is not None and spec.backend_store.type == "postgresql":
        dsn = str(spec.backend_store.dsn)
        backend = {
            "type": "postgresql",
            "dsn_ref": dsn,
            "dsn_fingerprint": _fingerprint(b, name, ("backend_store", "dsn_fingerprint"), dsn, f"{where}: backend_store.dsn"),
        }
    elif spec.backend_store is not None and spec.backend_store.path:
        backend["path"] = spec.backend_store.path
    artifacts: dict[str, Any] = {"type": "folder", "path": f"{base}/artifacts"}
    store = spec.artifacts
    if store is not None and store.type == "s3":
        artifacts = {"type": "s3", "bucket": store.bucket, "endpoint_url": store.endpoint_url}
        for key in ("access_key_id", "secret_access_key"):
            value = getattr(store, key)
            if value:
                artifacts[f"{key}_ref"] = value
                artifacts[f"{key}_fingerprint"] = _fingerprint(
                    b, name, ("artifacts", f"{key}_fingerprint"), value, f"{where}: artifacts.{key}"
                )
    elif store is not None and store.path:
        artifacts["path"] = store.path
    return {
        "mode": "managed",
        "name": name,
        "host": spec.host or DEFAULT_HOST,
        "port": spec.port or DEFAULT_PORT,
        "backend_store": backend,
        "artifacts": artifacts,
    }


def _fingerprint(b: Builder, name: str, path: tuple[str, ...], value: str, where: str) -> str | None:
    if env_reference(value) is None:
        return None
    return b.fingerprints.of(f"registry.{name}", path, resolve(value, where, b.environ))


def _secrets(b: Builder, spec: ModelRegistrySpec, where: str) -> Callable[[], dict[str, str]]:
    def secrets() -> dict[str, str]:
        found: dict[str, str] = {}
        if spec.backend_store is not None and spec.backend_store.dsn:
            found["backend_store.dsn"] = resolve(spec.backend_store.dsn, f"{where}: backend_store.dsn", b.environ)
        if spec.artifacts is not None:
            for key in ("access_key_id", "secret_access_key"):
                value = getattr(spec.artifacts, key)
                if value:
                    found[f"artifacts.{key}"] = resolve(value, f"{where}: artifacts.{key}", b.environ)
        return found

    return secrets
