"""The replica runtime: the few things a rollout needs from whatever runs replicas and proxies.

supervisord (local provider), the Docker engine (docker provider) and Kubernetes each implement
``ReplicaRuntime``; ``rollout.Rollout`` is the one rollout written over it. A runtime never decides
what to start or stop: it starts, lists, removes, explains and signals when asked.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .base import Attributes, Progress


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica to start: ``index`` within the deployment, ``token`` unique to this rollout."""

    address: str  # the deployment's address: the replica's owner
    planned: Attributes
    build: Any  # what ``locate_build`` returned
    index: int
    token: str
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    progress: Progress = field(default=lambda _message: None)

    @property
    def replica_id(self) -> str:
        """What the proxy reports as ``ReplicaID`` (stable across runtimes)."""
        planned = self.planned
        return f"{planned['name']}-{planned['deployment_id']}-{self.index}-{planned['project']}"


@dataclass(frozen=True)
class StartedReplica:
    """A replica just started: ``record`` goes to state (name, index, replica_id, url, ...);
    ``probe`` is where this host reaches it for health and examples (may differ from ``url``,
    which is where the proxy reaches it)."""

    record: dict[str, Any]
    probe: str

    @property
    def name(self) -> str:
        return str(self.record["name"])


@dataclass(frozen=True)
class LiveReplica:
    """A replica or proxy process as the runtime sees it now.

    ``owner`` is the address that started it (a deployment or the proxy resource); ``identity``
    holds facts that must equal the recorded ones for the process to count as the recorded one
    (an image id, an environment hash); ``facts`` are refreshed into the record (pid, container id).
    """

    name: str
    owner: str
    role: str  # "replica" or "proxy"
    running: bool
    identity: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


class ReplicaRuntime(Protocol):
    """What supervisord, the Docker engine and Kubernetes do for a rollout (all async)."""

    name: str
    parallel_start: bool  # whether replicas may be started side by side

    async def prepare(self) -> None:
        """Make sure the supervisor (supervisord, the workspace network) is there."""

    async def locate_build(self, address: str, planned: Attributes) -> Any:
        """The runnable build of ``planned`` (venv, image tag); ProviderError when it is missing."""

    async def start(self, spec: ReplicaSpec) -> StartedReplica:
        """Start one replica; ProviderError when the runtime refuses."""

    async def observe(self) -> list[LiveReplica]:
        """Every replica and proxy of this workspace that the runtime runs."""

    async def remove(self, name: str) -> None:
        """Drain (SIGTERM, so a prediction in flight finishes) and remove; fine when already gone."""

    def stop_reason(self, name: str) -> str | None:
        """Why ``name`` stopped (crashed, OOM-killed, gone), or None while it may still come up."""

    async def signal_proxies(self) -> int:
        """Tell every running proxy to reload the routes file; returns how many were told."""

    def proxy_host(self, planned: Attributes) -> str:
        """The host the proxy is reached on from this machine (written to the routes file's ``listen``)."""

    async def ensure_proxies(
        self, address: str, planned: Attributes, progress: Progress, *, env: Mapping[str, str], restart: bool
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Run the proxy processes ``planned`` asks for with ``env`` (the metrics DSN); ``restart``:
        the running ones were started with other settings, so restart them, one at a time where
        several share the port. Returns (their records, names just started or restarted)."""

    async def release_if_idle(self) -> None:
        """Stop the supervisor (supervisord, the network) when nothing of the workspace runs on it."""

    async def close(self) -> None: ...


def replica_token() -> str:
    """A random token for one rollout's replica names: a killed run's leftovers never collide."""
    return secrets.token_hex(3)


def probe_url(host: str, port: int | str) -> str:
    """Where this host reaches a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"
