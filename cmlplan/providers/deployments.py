"""What every provider that runs replicas behind the serving proxy shares.

The attribute paths that force a new deployment, the replica watchdog margin, and how a
deployment's processes and the proxy's settings are written into the routing table. Providers
differ in how they start and stop a replica (a supervisord program, a container), not in these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..serving.defaults import METRICS_DSN_ENV
from ..values import UNKNOWN
from .base import Attributes, PlanRequest, PlanResult, ProviderError, UnsupportedError
from .routing import RoutingTable

DEPLOYMENT_REPLACE_PATHS = (
    "build",
    "build_hash",
    "file",
    "function",
    "env",
    "env_fingerprints",
    "cpu",
    "memory",
    "gpus",
)
# What a replica reads at start but that needs no new deployment: a change restarts each replica in
# turn through the rollout (deployment id and build stay). request_timeout sets the watchdog.
RESTART_PATHS = ("request_timeout",)
PROXY_REPLACE_PATHS = ("host", "port")
# Read once at the proxy's start (the store's DSN lives in its environment): a change restarts the
# proxy processes one at a time.
PROXY_RESTART_PATHS = ("metrics_store", "metrics_retention_days", "technical_flush_seconds")
# A replica whose prediction runs this much longer than the proxy's request_timeout (which already
# answered 504) exits, and its supervisor starts a fresh one.
PREDICTION_TIMEOUT_MARGIN = 5.0
DEFAULT_REQUEST_TIMEOUT = 30.0
METRICS_DB = "metrics.db"


def prediction_timeout(planned: Attributes) -> float:
    return float(planned.get("request_timeout") or DEFAULT_REQUEST_TIMEOUT) + PREDICTION_TIMEOUT_MARGIN


def needs_restart(prior: Attributes | None, planned: Attributes) -> bool:
    """Whether the running replicas were started with other RESTART_PATHS values than planned."""
    return prior is not None and any(prior.get(path) != planned.get(path) for path in RESTART_PATHS)


def replicas_complete(current: Attributes, planned: Attributes) -> bool:
    """Whether the live processes are as many as the planned deployment runs."""
    processes = current.get("processes")
    if not isinstance(processes, list):
        return True  # not known (e.g. no refresh): nothing to say
    wanted = 0 if planned.get("stopped") else int(planned.get("replicas") or 0)
    return len(processes) == wanted


def process_names(attributes: Attributes) -> list[str]:
    return [p["name"] for p in attributes.get("processes") or [] if isinstance(p, dict) and "name" in p]


def route_model(routes: RoutingTable, planned: Attributes, processes: list[dict[str, Any]]) -> int:
    """Point the deployment's model at ``processes``; returns the new routing generation."""
    entry = {
        "key_hash": planned["access_key_hash"],
        "project": planned["project"],
        "name": planned["name"],
        "authentication": bool(planned.get("authentication")),
        "stopped": bool(planned.get("stopped")),
        "deployment_id": planned.get("deployment_id"),
        "build": str(planned.get("build") or ""),  # the metrics store's modelBuildCrn
        "replicas": [{"id": p["replica_id"], "url": p["url"]} for p in processes],
    }
    return routes.set_model(str(planned["model"]), entry)


def route_proxy(routes: RoutingTable, planned: Attributes, host: str, *, sqlite: bool = True) -> int:
    """Write the proxy's settings, API keys and projects; returns the new routing generation.

    ``sqlite``: without a PostgreSQL store, the proxy writes a SQLite file beside the routes (not
    on Kubernetes, where the routes are a read-only Secret shared by several proxy pods).
    """

    def mutate(data: dict[str, Any]) -> None:
        data["proxy"] = {
            "busy_timeout": planned["busy_timeout"],
            "request_timeout": planned["request_timeout"],
            "max_request_bytes": planned["max_request_bytes"],
            # read deadlines; a state written before they existed leaves them to the proxy's defaults
            **{k: planned[k] for k in ("header_timeout", "body_timeout", "keepalive_timeout") if k in planned},
            **metrics_routes(planned, sqlite=sqlite),
        }
        data["listen"] = {"host": host, "port": planned["port"]}
        data["api_keys"] = {
            key["key_hash"]: {"name": name, "user": key["user"], "expires_at": key["expires"]}
            for name, key in (planned.get("api_keys") or {}).items()
        }
        data["projects"] = planned.get("projects") or {}

    return routes.change(mutate)


def metrics_routes(planned: Attributes, *, sqlite: bool = True) -> dict[str, Any]:
    """The routes file's metrics settings: the DSN's variable (never its value) or SQLite, retention, flush."""
    found: dict[str, Any] = {}
    if planned.get("metrics_store"):
        found["metrics_store"] = {"dsn_env": METRICS_DSN_ENV}
    elif sqlite:  # a relative path: beside the routes file wherever the proxy sees it, in a container too
        found["metrics_store"] = {"url": f"sqlite:{METRICS_DB}"}
    for key in ("metrics_retention_days", "technical_flush_seconds"):
        if planned.get(key) is not None:
            found[key] = planned[key]
    return found


def proxy_environment(address: str, planned: Attributes, secrets: Mapping[str, str]) -> dict[str, str]:
    """What the proxy processes need in their environment: the metrics store's DSN, when there is one."""
    if not planned.get("metrics_store"):
        return {}
    dsn = secrets.get("metrics.dsn")
    if not dsn:
        reference = (planned.get("metrics_store") or {}).get("dsn_ref", "${env:...}")
        raise ProviderError(f"{address}: the metrics store's DSN ({reference}) was not resolved for this apply")
    return {METRICS_DSN_ENV: dsn}


def needs_proxy_restart(prior: Attributes | None, planned: Attributes) -> bool:
    """Whether the running proxies were started with other metrics settings than planned."""
    return prior is not None and any(prior.get(path) != planned.get(path) for path in PROXY_RESTART_PATHS)


def proxy_url(listen: dict[str, Any]) -> str | None:
    """Where the host reaches the proxy (a wildcard bind is reached on loopback)."""
    if not listen.get("port"):
        return None
    host = listen.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{listen['port']}"


def plan_replicated(request: PlanRequest, build_computed: tuple[str, ...]) -> PlanResult:
    """What a provider that runs builds, deployments and the proxy plans (local and docker alike).

    Computed values are copied from what is live, or unknown until apply; replicas that vanished
    outside cmlplan make ``processes`` unknown, so apply starts them again.
    """
    if request.desired is None:
        return PlanResult(planned=None)
    current = request.current or {}
    planned = dict(request.desired)
    if request.kind == "build":
        for computed in build_computed:
            planned[computed] = current.get(computed, UNKNOWN)
        return PlanResult(planned=planned, requires_replace=("hash",), computed=build_computed)
    planned["processes"] = current.get("processes", UNKNOWN) if request.current else UNKNOWN
    if request.kind == "deployment":
        if request.current and not replicas_complete(current, current):  # fewer than last applied
            planned["processes"] = UNKNOWN
        return PlanResult(
            planned=planned,
            requires_replace=DEPLOYMENT_REPLACE_PATHS,
            create_before_destroy=True,
            computed=("processes",),
        )
    return PlanResult(planned=planned, requires_replace=PROXY_REPLACE_PATHS, computed=("processes",))


def refuse_unsupported(request: PlanRequest, provider: str, *, gpus: bool, autoscale: bool) -> None:
    """One line at plan time when a deployment asks for GPUs or autoscaling the provider cannot give."""
    desired = request.desired
    if request.kind != "deployment" or desired is None:
        return
    if desired.get("gpus") and not gpus:
        raise UnsupportedError(
            f"{request.address}: deployment.gpus {desired['gpus']} needs the docker or kubernetes provider "
            f"(provider {provider!r} runs replicas as host processes without GPU scheduling)"
        )
    if desired.get("autoscale") and not autoscale:
        raise UnsupportedError(
            f"{request.address}: deployment.autoscale needs the kubernetes provider (provider {provider!r} runs "
            "a fixed number of replicas; set deployment.replicas instead)"
        )
