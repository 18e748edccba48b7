"""Proxy: the serving proxy; its settings carry every API key and project, so it follows them."""

from __future__ import annotations

from typing import Any

from ...serving.defaults import METRICS_FLUSH_SECONDS, METRICS_RETENTION_DAYS
from ...specs import env_reference
from ...specs.proxy import ProxySpec
from ...specs.workspace import MetricsSettings
from ...values import UNKNOWN
from ..envrefs import resolve
from .world import Builder, Known

KUBERNETES_PROXY_REPLICAS = 2


def add_proxy(b: Builder) -> None:
    proxies = b.config.of_kind("Proxy")
    resource = proxies[0] if proxies else None
    spec: ProxySpec = resource.spec if resource else ProxySpec()
    address = resource.address if resource else "proxy.default"
    apikeys = sorted(a for a, n in b.nodes.items() if n.kind == "apikey")
    projects = sorted(a for a, n in b.nodes.items() if n.kind == "project")
    deployments = sorted(a for a, n in b.nodes.items() if n.kind == "deployment")

    # on Kubernetes the proxy runs 2 pods unless the spec says otherwise (one node may go away)
    replicas = spec.replicas if "replicas" in spec.model_fields_set or b.provider != "kubernetes" else KUBERNETES_PROXY_REPLICAS

    settings = b.config.workspace_spec.metrics
    where = f"{b.config.workspace.origin}: {b.config.workspace.address}: metrics.dsn"
    metrics = metrics_attributes(b, address, settings, where)

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
            "replicas": replicas,
            "busy_timeout": spec.busy_timeout,
            "request_timeout": spec.request_timeout,
            "max_request_bytes": spec.max_request_size,
            "header_timeout": spec.header_timeout,
            "body_timeout": spec.body_timeout,
            "keepalive_timeout": spec.keepalive_timeout,
            "api_keys": keys,
            "projects": roles,
            **metrics,
        }

    b.add(
        address,
        "proxy",
        b.provider,
        tuple(apikeys + projects + deployments),
        compute,
        resource.lifecycle if resource else None,
        secrets=lambda: {"metrics.dsn": resolve(settings.dsn, where, b.environ)} if settings.dsn else {},
    )


def metrics_attributes(b: Builder, address: str, settings: MetricsSettings, where: str) -> dict[str, Any]:
    """The Workspace's metrics settings as the proxy's attributes; only those not at their default,
    so the proxy of an older state plans no change. The DSN stays a reference plus a keyed fingerprint (a new
    password shows in the plan and restarts the proxy without being shown)."""
    found: dict[str, Any] = {}
    if settings.dsn:
        found["metrics_store"] = {
            "dsn_ref": settings.dsn,
            "dsn_fingerprint": b.fingerprints.of(
                address, ("metrics_store", "dsn_fingerprint"), resolve(settings.dsn, where, b.environ)
            ),
        }
        assert env_reference(settings.dsn) is not None  # the spec allows nothing else
    if settings.retention_days != METRICS_RETENTION_DAYS:
        found["metrics_retention_days"] = settings.retention_days
    if settings.flush_interval != METRICS_FLUSH_SECONDS:
        found["technical_flush_seconds"] = settings.flush_interval
    return found
