"""``DockerRuntime``: replicas and the proxy as containers on the workspace's user network.

It owns the Docker client, the image builder and the network. Replica containers are named
``cmlplan-<workspace>-<project>-<model>-d<deployment id>-<token>-<index>`` and labelled with their
owner's address; the proxy (one per workspace: its port is published once) is
``cmlplan-<workspace>-proxy-0``. Probes go to a container's network IP from the host; the proxy
reaches replicas by name through Docker's DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from ..base import Attributes, Progress, ProviderError
from ..deployments import prediction_timeout
from ..images import ImageBuilder, image_tag
from ..runtime import LiveReplica, ReplicaSpec, StartedReplica
from . import containers as ct
from .logs import keep_log

STOP_TIMEOUT = 40  # a draining replica may finish a prediction (the proxy gives up after 35 s)
ROUTES_MOUNT = "/routes"


class DockerRuntime:
    name = "docker"
    parallel_start = True  # containers start and warm up side by side

    def __init__(
        self, workspace: str, root: Path, spec_dir: Path, salt: str, base_image: str, publish_host: str, routes_dir: Path
    ) -> None:
        self.workspace = workspace
        self.root = root
        self.spec_dir = spec_dir
        self.salt = salt
        self.base_image = base_image
        self.publish_host = publish_host
        self.routes_dir = routes_dir
        self.network = f"cmlplan-{workspace}"
        self.proxy_name = f"cmlplan-{workspace}-proxy-0"
        self._client: docker.DockerClient | None = None
        self._builder: ImageBuilder | None = None
        self._network_ready = False
        self._network_lock = asyncio.Lock()
        self._ncpu: float | None = None

    # -- the engine -------------------------------------------------------------------------------

    async def client(self) -> docker.DockerClient:
        if self._client is None:
            client = await asyncio.to_thread(ct.connect)
            if self._client is None:  # another task may have connected meanwhile
                self._client = client
                self._builder = ImageBuilder(client.api, self.root, self.base_image)
            else:
                client.close()
        return self._client

    @property
    def builder(self) -> ImageBuilder:
        if self._builder is None:
            raise ProviderError("internal: the Docker client is not connected yet")
        return self._builder

    async def containers(self) -> list[ct.ContainerState]:
        client = await self.client()
        return await asyncio.to_thread(ct.list_workspace, client, self.workspace, self.network, self.salt)

    # -- ReplicaRuntime -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        async with self._network_lock:  # deployments apply in parallel; one creates the network
            if not self._network_ready:
                client = await self.client()
                await asyncio.to_thread(ct.ensure_network, client, self.network, self.workspace, str(self.spec_dir))
                self._network_ready = True

    async def locate_build(self, address: str, planned: Attributes) -> str:
        await self.client()
        model_key = str(planned["model"]).removeprefix("model.")
        tag = image_tag(self.workspace, model_key, int(planned["build"]))
        if await asyncio.to_thread(self.builder.image, tag) is None:
            raise ProviderError(
                f"{address}: image {tag} of build {planned['build']} is not in the Docker engine; "
                "run apply again to rebuild it (or pin another build)"
            )
        return tag

    async def start(self, spec: ReplicaSpec) -> StartedReplica:
        client = await self.client()
        planned, tag = spec.planned, str(spec.build)
        project, name, deployment_id = planned["project"], planned["name"], planned["deployment_id"]
        container = f"cmlplan-{self.workspace}-{project}-{name}-d{deployment_id}-{spec.token}-{spec.index}"
        cpu = float(planned.get("cpu") or 1)
        threads = str(max(1, math.ceil(cpu)))
        env = {str(k): spec.secrets.get(f"env.{k}", str(v)) for k, v in (planned.get("env") or {}).items()}
        env.update({"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        command = [
            "python", "-m", "cmlplan.serving.replica", "--source", "/app", "--file", str(planned["file"]),
            "--function", str(planned["function"]), "--host", "0.0.0.0", "--port", str(ct.REPLICA_PORT),
            "--replica-id", spec.replica_id,
        ]
        model_key = str(planned["model"]).removeprefix("model.")
        if self._runtime_has(model_key, int(planned["build"]), "watchdog.py"):  # images of an older cmlplan lack it
            command += ["--prediction-timeout", f"{prediction_timeout(planned):g}"]
        if self._runtime_has(model_key, int(planned["build"]), "usage.py"):
            command += ["--usage-source", "cgroup"]  # the container's own cgroup, as docker stats reads it
        memory = int(planned["memory"])
        labels = {
            ct.LABEL_WORKSPACE: self.workspace,
            ct.LABEL_ADDRESS: spec.address,
            ct.LABEL_BUILD: str(planned["build"]),
            ct.LABEL_ROLE: "replica",
            ct.LABEL_SECRET_ENV: ",".join(sorted(k for k in env if f"env.{k}" in spec.secrets)),
        }
        ncpu = await self._cpus()
        spec.progress(f"starting replica {spec.index + 1} ({container})")

        devices = gpu_requests(int(planned.get("gpus") or 0))

        def run() -> ct.ContainerState:
            client.containers.run(
                tag, command, name=container, detach=True, environment=env, labels=labels,
                network=self.network, restart_policy={"Name": "on-failure"},
                mem_limit=memory, memswap_limit=memory, nano_cpus=int(min(cpu, ncpu) * 1e9), init=False,
                device_requests=devices,
            )
            state = ct.get(client, container, self.network, self.salt)
            if state is None:
                raise ProviderError(f"container {container} vanished right after it started")
            return state

        try:
            state = await asyncio.to_thread(run)
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.to_thread(ct.remove, client, container, 5)  # created but not started
            raise ProviderError(f"cannot start {container}: {exc}") from None
        record = {
            "name": container, "index": spec.index, "replica_id": spec.replica_id,
            "url": f"http://{container}:{ct.REPLICA_PORT}", "container_id": state.id[:12],
            "image_id": state.image_id, "env_hash": state.env_hash,
        }
        return StartedReplica(record=record, probe=f"http://{state.ip}:{ct.REPLICA_PORT}")

    async def observe(self) -> list[LiveReplica]:
        return [_live(c) for c in await self.containers()]

    async def remove(self, name: str) -> None:
        client = await self.client()
        await asyncio.to_thread(ct.remove, client, name, STOP_TIMEOUT, functools.partial(keep_log, self.root / "logs"))

    def stop_reason(self, name: str) -> str | None:
        client = self._client
        if client is None:
            return None
        state = ct.get(client, name, self.network, self.salt)
        if state is None:
            return f"container {name} is gone"
        if state.status in ("exited", "dead") or state.restarts > 0 or state.oom_killed:
            why = "OOM-killed" if state.oom_killed else f"exit code {state.exit_code}"
            return (
                f"{state.labels.get(ct.LABEL_ROLE, 'replica')} {name} exited ({why}, restarts {state.restarts}): "
                f"{ct.logs_tail(client, name)} (log: docker logs {name})"
            )
        return None

    async def signal_proxies(self) -> int:
        client = await self.client()
        proxies = [c for c in await self.containers() if c.labels.get(ct.LABEL_ROLE) == "proxy" and c.running]
        for proxy in proxies:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await asyncio.to_thread(client.api.kill, proxy.id, "SIGHUP")
        return len(proxies)

    def proxy_host(self, planned: Attributes) -> str:
        return self.publish_host

    async def ensure_proxies(
        self, address: str, planned: Attributes, progress: Progress, *, env: Mapping[str, str], restart: bool
    ) -> tuple[list[dict[str, Any]], list[str]]:
        client = await self.client()
        image = await asyncio.to_thread(self.builder.ensure_proxy_image, progress)
        name, port = self.proxy_name, int(planned["port"])
        state = await asyncio.to_thread(ct.get, client, name, self.network, self.salt)
        started = []
        if state is None or not state.running or state.labels.get("cmlplan.image") != image or restart:
            progress(f"{'restarting' if state is not None and restart else 'starting'} {name} on {self.publish_host}:{port}")
            command = [
                "python", "-m", "cmlplan.serving.proxy", "--routes", f"{ROUTES_MOUNT}/routes.json",
                "--host", "0.0.0.0", "--port", str(port),
            ]
            labels = {
                ct.LABEL_WORKSPACE: self.workspace, ct.LABEL_ADDRESS: address,
                ct.LABEL_ROLE: "proxy", "cmlplan.image": image,
            }

            def run() -> None:
                ct.remove(client, name, stop_timeout=10)
                client.containers.run(
                    image, command, name=name, detach=True, labels=labels, network=self.network,
                    restart_policy={"Name": "on-failure"}, user=f"{os.getuid()}:{os.getgid()}",
                    # explicit, so the SIGHUP reloads (kill API) do not count as a stop: without a
                    # stop signal, Docker 20.10 disables the restart policy after any signal it sends
                    stop_signal="SIGTERM",
                    ports={f"{port}/tcp": (self.publish_host, port)},
                    volumes={str(self.routes_dir): {"bind": ROUTES_MOUNT, "mode": "rw"}},
                    environment=dict(env),  # the metrics DSN: in the container's environment only
                )

            try:
                await asyncio.to_thread(run)
            except docker.errors.DockerException as exc:
                raise ProviderError(f"{address}: cannot start {name}: {exc}") from None
            started.append(name)
        return [{"name": name, "index": 0}], started

    async def release_if_idle(self) -> None:
        client = await self.client()
        if not await self.containers():
            await asyncio.to_thread(ct.remove_network, client, self.network)
            self._network_ready = False

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- helpers ----------------------------------------------------------------------------------

    def _runtime_has(self, model_key: str, number: int, module: str) -> bool:
        """Whether the build's image carries this replica module (its context holds the runtime)."""
        runtime = self.builder.context_dir(model_key, number) / "runtime" / "cmlplan" / "serving" / "replica"
        return (runtime / module).is_file()

    async def _cpus(self) -> float:
        if self._ncpu is None:
            client = await self.client()
            info = await asyncio.to_thread(client.info)
            self._ncpu = float(info.get("NCPU") or os.cpu_count() or 1)
        return self._ncpu


def gpu_requests(gpus: int) -> list[docker.types.DeviceRequest] | None:
    """``deployment.gpus`` as the engine's device requests (the NVIDIA container toolkit serves them)."""
    if gpus <= 0:
        return None
    return [docker.types.DeviceRequest(driver="nvidia", count=gpus, capabilities=[["gpu"]])]


def _live(state: ct.ContainerState) -> LiveReplica:
    """A container as a rollout sees it: another image or environment is not the recorded replica."""
    return LiveReplica(
        name=state.name,
        owner=state.labels.get(ct.LABEL_ADDRESS, ""),
        role=state.labels.get(ct.LABEL_ROLE, "replica"),
        running=state.running,
        identity={"image_id": state.image_id, "env_hash": state.env_hash},
        facts={"container_id": state.id[:12]},
    )
