"""What every provider that runs replicas behind the serving proxy shares.

The attribute paths that force a new deployment, the replica watchdog margin, and how a
deployment's processes and the proxy's settings are written into the routing table. Providers
differ in how they start and stop a replica (a supervisord program, a container), not in these.
"""

from __future__ import annotations

from typing import Any

from .base import Attributes
from .routing import RoutingTable

HEALTH_TIMEOUT = 120.0
DEPLOYMENT_REPLACE_PATHS = (
    "build",
    "build_hash",
    "file",
    "function",
    "env",
    "env_fingerprints",
    "cpu",
    "memory",
    "request_timeout",
)
PROXY_REPLACE_PATHS = ("host", "port")
# A replica whose prediction runs this much longer than the proxy's request_timeout (which already
# answered 504) exits, and its supervisor starts a fresh one.
PREDICTION_TIMEOUT_MARGIN = 5.0
DEFAULT_REQUEST_TIMEOUT = 30.0
METRICS_DB = "metrics.db"


def prediction_timeout(planned: Attributes) -> float:
    return float(planned.get("request_timeout") or DEFAULT_REQUEST_TIMEOUT) + PREDICTION_TIMEOUT_MARGIN


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


def route_proxy(routes: RoutingTable, planned: Attributes, host: str) -> int:
    """Write the proxy's settings, API keys and projects; returns the new routing generation."""

    def mutate(data: dict[str, Any]) -> None:
        data["proxy"] = {
            "busy_timeout": planned["busy_timeout"],
            "request_timeout": planned["request_timeout"],
            "max_request_bytes": planned["max_request_bytes"],
            # read deadlines; a state written before they existed leaves them to the proxy's defaults
            **{k: planned[k] for k in ("header_timeout", "body_timeout", "keepalive_timeout") if k in planned},
            # the proxy writes the metrics store: {"dsn_env": VAR} when planned, else SQLite beside the routes
            "metrics_store": planned.get("metrics_store") or {"url": f"sqlite:{routes.path.parent / METRICS_DB}"},
        }
        data["listen"] = {"host": host, "port": planned["port"]}
        data["api_keys"] = {
            key["key_hash"]: {"name": name, "user": key["user"], "expires_at": key["expires"]}
            for name, key in (planned.get("api_keys") or {}).items()
        }
        data["projects"] = planned.get("projects") or {}

    return routes.change(mutate)


def proxy_url(listen: dict[str, Any]) -> str | None:
    """Where the host reaches the proxy (a wildcard bind is reached on loopback)."""
    if not listen.get("port"):
        return None
    host = listen.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{listen['port']}"
