"""The routing table: loaded from the provider's JSON file, validated, looked up by key hash.

A table is immutable once built; a reload builds a whole new one and the proxy swaps it in one
assignment. Replica objects are reused by URL and pools by model address, so busy state, waiting
lines and pooled connections survive a reload. Validation happens entirely before any pool is
touched, so a bad file leaves the running table as it was.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..defaults import (
    BODY_TIMEOUT,
    BUSY_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_REQUEST_BYTES,
    METRICS_FLUSH_SECONDS,
    METRICS_RETENTION_DAYS,
    REQUEST_TIMEOUT,
)
from .pool import Pool, Replica

SUPPORTED_VERSION = 1


class RoutesError(Exception):
    """The routing file is unreadable or invalid; the message is one line."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    user: str
    expires_at: float | None  # wall-clock epoch seconds; None never expires


@dataclass(frozen=True, slots=True)
class ModelRoute:
    address: str
    project: str
    name: str
    authentication: bool
    stopped: bool
    deployment_id: int | None
    pool: Pool
    build: str = ""  # the build serving now, for the metrics store's modelBuildCrn

    @property
    def deployment(self) -> str:
        """The deployment's name in the metrics store (CML's modelDeploymentCrn)."""
        return f"{self.address}/deployments/{self.deployment_id or 0}"


@dataclass(frozen=True, slots=True)
class RoutingTable:
    generation: int
    salt: str
    busy_timeout: float
    request_timeout: float
    max_request_bytes: int
    header_timeout: float  # read a request line and headers within this long
    body_timeout: float  # read a request body within this long after its headers
    keepalive_timeout: float  # close a keep-alive connection idle this long
    models: dict[str, ModelRoute]
    api_keys: dict[str, ApiKey]
    projects: dict[str, dict[str, str]]
    # the metrics store: {"url": "sqlite:PATH"} or {"dsn_env": VAR} (a PostgreSQL DSN from the
    # proxy's environment, so no password is in this file); read once, at the proxy's start
    metrics_store: dict[str, str] | None = None
    metrics_retention_days: float = METRICS_RETENTION_DAYS  # minute cells older than this are rolled up into hours
    technical_flush_seconds: float = METRICS_FLUSH_SECONDS  # how often the proxy writes its technical counts

    def key_hash(self, key: str) -> str:
        # surrogatepass: a "\ud800" escape in the JSON is a key that matches nothing, not a 500;
        # generated keys are ASCII, so their hashes are unchanged
        return hashlib.sha256((self.salt + key).encode("utf-8", "surrogatepass")).hexdigest()

    def find_model(self, access_key: str) -> ModelRoute | None:
        return self.models.get(self.key_hash(access_key))

    def find_api_key(self, api_key: str) -> ApiKey | None:
        return self.api_keys.get(self.key_hash(api_key))

    def is_collaborator(self, project: str, user: str) -> bool:
        return user in self.projects.get(project, ())

    def role(self, project: str, user: str) -> str | None:
        return self.projects.get(project, {}).get(user)

    def find_route(self, address: str | None, deployment: str | None) -> ModelRoute | None:
        """The model by address or deployment name (for the metrics API)."""
        for route in self.models.values():
            if (address is None or route.address == address) and (
                deployment is None or route.deployment == deployment
            ):
                return route
        return None

    def pools(self) -> list[Pool]:
        return list({id(route.pool): route.pool for route in self.models.values()}.values())


def load_table(path: Path, previous: RoutingTable | None = None) -> RoutingTable:
    """Read and validate path; reuse pools and replicas of previous. Raises RoutesError."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise RoutesError(f"cannot read routes file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise RoutesError(f"routes file {path} is not valid JSON: {exc}") from exc
    try:
        return _build(document, previous)
    except (KeyError, TypeError, ValueError) as exc:
        raise RoutesError(f"routes file {path} is invalid: {_explain(exc)}") from exc


def _build(doc: Any, previous: RoutingTable | None) -> RoutingTable:
    _require(isinstance(doc, dict), "top level must be an object")
    _require(doc["version"] == SUPPORTED_VERSION, f"unsupported version {doc['version']!r}")
    generation = _int(doc["generation"], "generation")
    salt = doc["salt"]
    _require(isinstance(salt, str), "salt must be a string")
    proxy = _object(doc.get("proxy", {}), "proxy")
    busy_timeout = _positive(proxy.get("busy_timeout", BUSY_TIMEOUT), "proxy.busy_timeout")
    request_timeout = _positive(proxy.get("request_timeout", REQUEST_TIMEOUT), "proxy.request_timeout")
    max_request_bytes = _int(proxy.get("max_request_bytes", MAX_REQUEST_BYTES), "proxy.max_request_bytes")
    _require(max_request_bytes > 0, "proxy.max_request_bytes must be positive")
    header_timeout = _positive(proxy.get("header_timeout", HEADER_TIMEOUT), "proxy.header_timeout")
    body_timeout = _positive(proxy.get("body_timeout", BODY_TIMEOUT), "proxy.body_timeout")
    keepalive_timeout = _positive(
        proxy.get("keepalive_timeout", KEEPALIVE_TIMEOUT), "proxy.keepalive_timeout"
    )
    specs = {h: _model_spec(h, m) for h, m in _object(doc.get("models", {}), "models").items()}
    api_keys = {h: _api_key(h, k) for h, k in _object(doc.get("api_keys", {}), "api_keys").items()}
    projects = {
        name: dict(_object(members, f"projects.{name}"))
        for name, members in _object(doc.get("projects", {}), "projects").items()
    }
    models = _bind(specs, previous)
    store = proxy.get("metrics_store")
    if store is not None:
        store = _object(store, "proxy.metrics_store")
        _require(
            len(store) == 1 and ("url" in store or "dsn_env" in store),
            'proxy.metrics_store must be {"url": "sqlite:PATH"} or {"dsn_env": VAR}',
        )
        for field, value in store.items():
            _str(value, f"proxy.metrics_store.{field}")
    return RoutingTable(
        generation,
        salt,
        busy_timeout,
        request_timeout,
        max_request_bytes,
        header_timeout,
        body_timeout,
        keepalive_timeout,
        models,
        api_keys,
        projects,
        store,
        _positive(proxy.get("metrics_retention_days", METRICS_RETENTION_DAYS), "proxy.metrics_retention_days"),
        _positive(proxy.get("technical_flush_seconds", METRICS_FLUSH_SECONDS), "proxy.technical_flush_seconds"),
    )


def _model_spec(key_hash: str, raw: Any) -> dict[str, Any]:
    where = f"models.{key_hash[:12]}"
    model = _object(raw, where)
    replicas = model.get("replicas", [])
    _require(isinstance(replicas, list), f"{where}.replicas must be a list")
    pairs = []
    for index, replica in enumerate(replicas):
        replica = _object(replica, f"{where}.replicas[{index}]")
        url = _str(replica["url"], f"{where}.replicas[{index}].url").rstrip("/")
        _require(url.startswith("http://"), f"{where}.replicas[{index}].url must start with http://")
        pairs.append((_str(replica["id"], f"{where}.replicas[{index}].id"), url))
    deployment_id = model.get("deployment_id")
    return {
        "address": _str(model["address"], f"{where}.address"),
        "project": _str(model["project"], f"{where}.project"),
        "name": _str(model["name"], f"{where}.name"),
        "authentication": _bool(model.get("authentication", True), f"{where}.authentication"),
        "stopped": _bool(model.get("stopped", False), f"{where}.stopped"),
        "deployment_id": None if deployment_id is None else _int(deployment_id, f"{where}.deployment_id"),
        "build": str(model.get("build") or ""),
        "replicas": pairs,
    }


def _api_key(key_hash: str, raw: Any) -> ApiKey:
    where = f"api_keys.{key_hash[:12]}"
    key = _object(raw, where)
    expires = key.get("expires_at")
    expires_at = None
    if expires is not None:
        moment = datetime.fromisoformat(_str(expires, f"{where}.expires_at"))
        _require(moment.tzinfo is not None, f"{where}.expires_at must carry a UTC offset")
        expires_at = moment.timestamp()
    return ApiKey(_str(key["name"], f"{where}.name"), _str(key["user"], f"{where}.user"), expires_at)


def _bind(specs: dict[str, dict[str, Any]], previous: RoutingTable | None) -> dict[str, ModelRoute]:
    """Attach pools and replicas, reusing the previous table's objects. Only runs on a valid file."""
    old_pools = {pool.address: pool for pool in previous.pools()} if previous else {}
    old_replicas = {r.url: r for pool in old_pools.values() for r in pool.replicas}
    pools: dict[str, Pool] = {}
    replicas: dict[str, Replica] = {}
    models = {}
    for key_hash, spec in specs.items():
        address = spec["address"]
        if address not in pools:
            members = []
            for replica_id, url in spec["replicas"]:
                replica = replicas.get(url) or old_replicas.get(url) or Replica(replica_id, url)
                replica.id = replica_id
                replicas[url] = replica
                members.append(replica)
            pool = old_pools.get(address) or Pool(address)
            pools[address] = pool
            pool.set_replicas(tuple(members))
        fields = {k: v for k, v in spec.items() if k != "replicas"}
        models[key_hash] = ModelRoute(pool=pools[address], **fields)
    for address, pool in old_pools.items():
        if address not in pools:
            pool.close()
    return models


def _explain(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _object(value: Any, where: str) -> dict[str, Any]:
    _require(isinstance(value, dict), f"{where} must be an object")
    return value


def _str(value: Any, where: str) -> str:
    _require(isinstance(value, str) and value != "", f"{where} must be a non-empty string")
    return value


def _bool(value: Any, where: str) -> bool:
    _require(isinstance(value, bool), f"{where} must be true or false")
    return value


def _int(value: Any, where: str) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer")
    return value


def _positive(value: Any, where: str) -> float:
    _require(
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0,
        f"{where} must be a positive number",
    )
    return float(value)
