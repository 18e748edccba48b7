"""Managed ModelRegistry resources on the docker provider: ``mlflow server`` in a container.

The container ``cmlplan-<workspace>-registry-<name>`` runs the shared image
``cmlplan/mlflow:<mlflow version>-<digest>`` (mlflow, a PostgreSQL driver and the S3 client,
installed offline from wheels resolved on the host, as model images are), on the workspace network,
as the invoking user, with its port published on the spec's ``host`` (loopback by default). So
``uri`` (``http://127.0.0.1:5000``) is where this machine reaches it and ``network_uri``
(``http://cmlplan-<ws>-registry-main:5000``) where model containers do.

Data lives on the host and survives a replaced container, as it does on the local provider: the
SQLite file's folder and the artifact folder (``.cmlplan/registry/<name>/`` by default) are bind
mounts. A PostgreSQL DSN and S3 keys reach the server in its environment only: never in labels,
state, plans or its command line; ``docker inspect`` (root-equivalent, like the Docker socket
itself) shows a container's environment. ``host.docker.internal`` names the host from inside, for
a database or S3 endpoint there.

Drift: a container removed, stopped, or recreated with another image or environment by hand is
not the recorded one (the plan starts it again); one that runs but does not answer ``/health``
within 5 s shows that in its ``processes`` and the plan restarts it. Destroy removes the container
and keeps the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from ...registry.client import health_problem
from ...registry.server import server_uri, sqlalchemy_dsn, store_path
from ...values import UNKNOWN
from ..base import ApplyRequest, ApplyResult, Attributes, PlanRequest, PlanResult, ProviderError
from ..images import mlflow_tag
from ..registry_server import wait_until_serving
from . import containers as ct
from .runtime import DockerRuntime

SERVER_PORT = 5000  # inside the container
ROLE = "registry"
BACKEND_MOUNT = "/data/backend"
ARTIFACTS_MOUNT = "/data/artifacts"
_IDENTITY = ("image_id", "env_hash")
# mlflow's own default (loopback and private addresses), plus the names the server is reached by
_DEFAULT_HOSTS = (
    "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[[]::1]:*", "10.*", "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
)


def container_name(workspace: str, registry: str) -> str:
    return f"cmlplan-{workspace}-registry-{registry}"


@dataclass(frozen=True)
class ServerContainer:
    """How to run one registry's container; secrets only in ``environment``."""

    name: str
    command: list[str]
    environment: dict[str, str]
    volumes: dict[str, dict[str, str]]
    ports: dict[str, tuple[str, int]]
    labels: dict[str, str]
    folders: tuple[Path, ...]  # host folders the mounts need


def server_container(
    workspace: str, attributes: Mapping[str, Any], spec_dir: Path, secrets: Mapping[str, str], image: str
) -> ServerContainer:
    """The container ``attributes`` (a managed registry's planned attributes) describe."""
    name = container_name(workspace, str(attributes["name"]))
    host, port = str(attributes.get("host") or "127.0.0.1"), int(attributes["port"])
    allowed = [*_DEFAULT_HOSTS, name, f"{name}:*"]
    if host not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
        allowed += [host, f"{host}:*"]
    command = [
        "mlflow", "server", "--host", "0.0.0.0", "--port", str(SERVER_PORT), "--workers", "1",
        "--serve-artifacts", "--allowed-hosts", ",".join(allowed),
    ]
    environment = {"HOME": "/tmp"}  # the invoking user has no home in the image
    volumes: dict[str, dict[str, str]] = {}
    folders: list[Path] = []
    backend = attributes.get("backend_store") or {}
    if backend.get("type") == "postgresql":
        environment["MLFLOW_BACKEND_STORE_URI"] = sqlalchemy_dsn(secrets["backend_store.dsn"], psycopg2=False)
    else:
        database = store_path(spec_dir, str(backend.get("path")))
        volumes[str(database.parent)] = {"bind": BACKEND_MOUNT, "mode": "rw"}
        folders.append(database.parent)
        command += ["--backend-store-uri", f"sqlite:///{BACKEND_MOUNT}/{database.name}"]
    artifacts = attributes.get("artifacts") or {}
    if artifacts.get("type") == "s3":
        command += ["--artifacts-destination", str(artifacts["bucket"])]
        if artifacts.get("endpoint_url"):
            environment["MLFLOW_S3_ENDPOINT_URL"] = str(artifacts["endpoint_url"])
        for key, variable in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
            if f"artifacts.{key}" in secrets:
                environment[variable] = secrets[f"artifacts.{key}"]
    else:
        folder = store_path(spec_dir, str(artifacts.get("path")))
        volumes[str(folder)] = {"bind": ARTIFACTS_MOUNT, "mode": "rw"}
        folders.append(folder)
        command += ["--artifacts-destination", ARTIFACTS_MOUNT]
    labels = {
        ct.LABEL_WORKSPACE: workspace,
        ct.LABEL_ADDRESS: f"registry.{attributes['name']}",
        ct.LABEL_ROLE: ROLE,
        "cmlplan.image": image,
    }
    ports = {f"{SERVER_PORT}/tcp": (host, port)}
    return ServerContainer(name, command, environment, volumes, ports, labels, tuple(folders))


class MlflowContainers:
    """Runs, reads and removes the workspace's managed registries through ``runtime``'s engine."""

    def __init__(self, runtime: DockerRuntime, spec_dir: Path, salt: str, base_image: str) -> None:
        self.runtime = runtime
        self.spec_dir = spec_dir
        self.salt = salt
        self.base_image = base_image

    def name(self, attributes: Attributes) -> str:
        return container_name(self.runtime.workspace, str(attributes["name"]))

    async def read(self, attributes: Attributes) -> Attributes | None:
        """The recorded registry as the engine runs it; None when its container is not running."""
        client = await self.runtime.client()
        name = self.name(attributes)
        state = await asyncio.to_thread(ct.get, client, name, self.runtime.network, self.salt)
        if state is None or not state.running:
            return None
        recorded = next(iter(attributes.get("processes") or []), {})
        live = _record(state)
        if isinstance(recorded, dict) and any(recorded.get(k) not in (None, live[k]) for k in _IDENTITY):
            return {**attributes, "processes": []}  # another image or environment: not what was applied
        uri = attributes.get("uri")
        problem = await asyncio.to_thread(health_problem, str(uri)) if isinstance(uri, str) else None
        if problem is not None:
            live["health"] = f"does not answer ({problem})"
        return {**attributes, "processes": [live]}

    def plan(self, request: PlanRequest) -> PlanResult:
        if request.desired is None:
            return PlanResult(planned=None)
        planned = dict(request.desired)
        planned["uri"] = server_uri(planned)
        planned["network_uri"] = f"http://{self.name(planned)}:{SERVER_PORT}"
        planned["image"] = mlflow_tag(self.base_image)
        processes = (request.current or {}).get("processes")
        healthy = isinstance(processes, list) and bool(processes) and all(
            isinstance(p, dict) and "health" not in p for p in processes
        )
        planned["processes"] = processes if healthy else UNKNOWN
        return PlanResult(planned=planned, computed=("processes",))

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return await self._remove(request)
        planned = request.planned
        client = await self.runtime.client()
        await self.runtime.prepare()
        image = await asyncio.to_thread(self.runtime.builder.ensure_mlflow_image, request.progress)
        spec = server_container(self.runtime.workspace, planned, self.spec_dir, request.secrets, image)
        uri = server_uri(planned)
        for folder in spec.folders:
            folder.mkdir(parents=True, exist_ok=True)
        request.progress(f"starting mlflow server {spec.name} on {uri} ({planned['network_uri']} on the network)")

        def run() -> None:
            ct.remove(client, spec.name, stop_timeout=10)
            client.containers.run(
                image, spec.command, name=spec.name, detach=True, environment=spec.environment,
                labels=spec.labels, network=self.runtime.network, restart_policy={"Name": "on-failure"},
                user=f"{os.getuid()}:{os.getgid()}", stop_signal="SIGTERM", ports=spec.ports,
                volumes=spec.volumes, extra_hosts={"host.docker.internal": "host-gateway"},
            )

        try:
            await asyncio.to_thread(run)
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(ct.remove, client, spec.name, 5)
            raise ProviderError(f"{request.address}: cannot start {spec.name}: {_brief(exc)}") from None
        await self._wait(spec.name, uri, request)
        request.progress(f"registry serving on {uri}")
        state = await asyncio.to_thread(ct.get, client, spec.name, self.runtime.network, self.salt)
        processes = [_record(state)] if state is not None else [{"name": spec.name}]
        return ApplyResult(attributes={**planned, "image": image, "processes": processes})

    async def _wait(self, name: str, uri: str, request: ApplyRequest) -> None:
        await wait_until_serving(self.runtime, name, uri, request.address, f"docker logs {name}")

    async def _remove(self, request: ApplyRequest) -> ApplyResult:
        prior = request.prior or {}
        name = self.name(prior)
        request.progress(f"removing {name}; its data stays where it was")
        await self.runtime.remove(name)
        await self.runtime.release_if_idle()
        return ApplyResult(attributes=None)


def _record(state: ct.ContainerState) -> dict[str, Any]:
    return {"name": state.name, "container_id": state.id[:12], "image_id": state.image_id, "env_hash": state.env_hash}


def _brief(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
