"""Containers and the workspace network, found by label; thin, synchronous wrappers of the SDK.

Every object cmlplan creates carries ``cmlplan.workspace=<workspace>``; replicas also carry the
deployment's address and build, so ``read`` needs one list call per workspace. The network also
records the spec folder that owns the workspace, so two folders with the same workspace name on one
engine are refused instead of silently sharing containers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from ..base import ProviderError

LABEL_WORKSPACE = "cmlplan.workspace"
LABEL_ADDRESS = "cmlplan.address"
LABEL_BUILD = "cmlplan.build"
LABEL_ROLE = "cmlplan.role"
LABEL_SPEC_DIR = "cmlplan.spec-dir"
# the names (never the values) of a replica's ${env:} variables, so its environment hash leaves them out
LABEL_SECRET_ENV = "cmlplan.secret-env"
MASKED_PREFIX = "m:"  # an environment hash without secret values (older ones hashed them too)
REPLICA_PORT = 8080


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine reports it."""

    name: str
    id: str
    status: str  # created, running, restarting, exited, ...
    running: bool
    image_id: str
    env_hash: str
    labels: dict[str, str]
    ip: str | None
    restarts: int
    oom_killed: bool
    exit_code: int


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ProviderError(
            f"cannot reach the Docker engine ({exc}); start it with scripts/docker-engine"
        ) from None
    return client


def env_hash(salt: str, env: list[str] | None, secret_names: frozenset[str] | None) -> str:
    """A hash of a container's environment, to tell a container started with another one.

    The values of ``secret_names`` are left out: a hash over a weak secret and an environment an
    attacker can rebuild (state records the rest) would confirm a guessed value offline; a changed
    secret already shows in the plan through its keyed fingerprint. ``None``: a container older
    cmlplan started without the label, hashed as it was then (whole environment, no prefix).
    """
    if secret_names is None:
        text = json.dumps(sorted(env or []))
        return hashlib.sha256((salt + text).encode()).hexdigest()[:24]
    masked = [f"{entry.split('=', 1)[0]}=(secret)" if entry.split("=", 1)[0] in secret_names else entry for entry in env or []]
    text = json.dumps(sorted(masked))
    return MASKED_PREFIX + hashlib.sha256((salt + text).encode()).hexdigest()[:24]


def secret_names(labels: dict[str, str]) -> frozenset[str] | None:
    text = labels.get(LABEL_SECRET_ENV)
    return None if text is None else frozenset(name for name in text.split(",") if name)


def state_of(container: Any, network: str, salt: str) -> ContainerState:
    attrs = container.attrs
    state = attrs.get("State") or {}
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    ip = (networks.get(network) or {}).get("IPAddress") or None
    return ContainerState(
        name=container.name,
        id=container.id,
        status=str(state.get("Status", "unknown")),
        running=bool(state.get("Running")) and not state.get("Restarting"),
        image_id=str(attrs.get("Image", "")),
        env_hash=env_hash(salt, (attrs.get("Config") or {}).get("Env"), secret_names(labels)),
        labels=labels,
        ip=ip,
        restarts=int(attrs.get("RestartCount") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        exit_code=int(state.get("ExitCode") or 0),
    )


def list_workspace(client: docker.DockerClient, workspace: str, network: str, salt: str) -> list[ContainerState]:
    found = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_WORKSPACE}={workspace}"}):
        with contextlib.suppress(docker.errors.NotFound):
            found.append(state_of(container, network, salt))
    return found


def get(client: docker.DockerClient, name: str, network: str, salt: str) -> ContainerState | None:
    try:
        return state_of(client.containers.get(name), network, salt)
    except docker.errors.NotFound:
        return None


def remove(client: docker.DockerClient, name: str, stop_timeout: int = 40, keep_log: Callable[[Any], None] | None = None) -> None:
    """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; fine when already gone.
    ``keep_log`` is handed the stopped container first (its log goes with it)."""
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        if container.status in ("running", "restarting"):
            container.stop(timeout=stop_timeout)  # a stopped container is not restarted by its policy
    if keep_log is not None:
        with contextlib.suppress(docker.errors.DockerException, OSError):
            keep_log(container)
    with contextlib.suppress(docker.errors.NotFound):
        try:
            container.remove(force=True, v=True)
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def logs_tail(client: docker.DockerClient, name: str, lines: int = 5) -> str:
    try:
        text = client.containers.get(name).logs(tail=lines).decode(errors="replace")
    except docker.errors.DockerException:
        return "no log"
    found = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(found[-3:]) or "empty log"


def check_owner(client: docker.DockerClient, name: str, workspace: str, spec_dir: str) -> bool:
    """Whether the workspace network exists; raises when another spec folder owns it."""
    for network in client.networks.list(names=[name]):
        if network.name != name:
            continue
        owner = (network.attrs.get("Labels") or {}).get(LABEL_SPEC_DIR)
        if owner and owner != spec_dir:
            raise ProviderError(
                f"workspace {workspace!r} is already running on this Docker engine from {owner}; "
                "workspace names must be unique per engine (rename this one in its Workspace spec)"
            )
        return True
    return False


def ensure_network(client: docker.DockerClient, name: str, workspace: str, spec_dir: str) -> None:
    if check_owner(client, name, workspace, spec_dir):
        return
    try:
        client.networks.create(
            name, driver="bridge", check_duplicate=True,
            labels={LABEL_WORKSPACE: workspace, LABEL_SPEC_DIR: spec_dir},
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: another cmlplan created it just now
            raise ProviderError(f"cannot create the network {name}: {exc.explanation or exc}") from None


def remove_network(client: docker.DockerClient, name: str) -> None:
    for network in client.networks.list(names=[name]):
        if network.name == name:
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
