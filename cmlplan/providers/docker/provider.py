"""The docker provider: builds as images, replicas and the proxy as containers on one user network.

``runtime.DockerRuntime`` runs the containers; the shared ``rollout.Rollout`` rolls them out (the
same steps, attributes and replace paths as the local provider): new replica containers start,
pass /healthz and every example (probed from the host on their network IP), the proxy's route
switches to them (``http://<container name>:8080``, resolved by Docker's DNS on the workspace
network) and the rollout waits until the proxy serves the new routing generation; then the old
containers drain (SIGTERM, up to 40 s) and are removed.

Limits are the engine's: ``memory`` is the container's memory limit (swap included, so a replica
past it is OOM-killed and restarted by its on-failure policy), ``cpu`` is ``nano_cpus``.

A managed ModelRegistry is an ``mlflow server`` container on the same network
(``mlflow_container.py``); builds of registered model versions download them on the host first
(``registered.build_source``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import docker.errors

from ..attributes import check
from ..base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    LogLine,
    LogRequest,
    PlanRequest,
    PlanResult,
    ProviderContext,
    ProviderError,
    ReadRequest,
    ReadResult,
    UnsupportedError,
)
from ..buildfiles import BuildError, build_error
from ..images import LABEL_ADDRESS as IMAGE_LABEL_ADDRESS
from ..images import LABEL_KIND, ImageRequest, mlflow_tag
from ..registered import build_source, recorded_manifest
from ..replicated import ReplicatedProvider
from ..rollout import Rollout
from ..routing import RoutingTable
from . import containers as ct
from .logs import kept_lines, select
from .logs import read_logs as read_container_logs
from .mlflow_container import MlflowContainers
from .runtime import DockerRuntime


class DockerProvider(ReplicatedProvider):
    name = "docker"
    kinds = frozenset({"build", "deployment", "proxy", "registry"})
    build_computed = ("path", "image", "image_id")
    gpus = True  # device requests on the engine

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.root = Path(context.data_dir)
        self.spec_dir = Path(context.spec_dir)
        self.workspace = context.workspace_id
        self.base_image = context.settings.docker.base_image
        self.publish_host = context.settings.docker.publish_host
        self.routes = RoutingTable(self.root / "run" / "routes.json", context.salt)
        self.runtime = DockerRuntime(
            self.workspace, self.root, self.spec_dir, context.salt, self.base_image, self.publish_host,
            self.routes.path.parent,
        )
        self.network = self.runtime.network
        self.rollout = Rollout(self.runtime, self.routes)
        self.registries = MlflowContainers(self.runtime, self.spec_dir, context.salt, self.base_image)

    async def build_exists(self, attributes: Attributes) -> bool:
        tag = attributes.get("image")
        if not tag:
            return False
        await self.runtime.client()
        image = await asyncio.to_thread(self.runtime.builder.image, str(tag))
        return image is not None and image["id"] == attributes.get("image_id")

    # -- managed model registries (mlflow server containers); the rest is ReplicatedProvider's ------

    async def read(self, request: ReadRequest) -> ReadResult:
        registries = [ref for ref in request.resources if ref.kind == "registry"]
        others = tuple(ref for ref in request.resources if ref.kind != "registry")
        result = await super().read(request.model_copy(update={"resources": others})) if others else None
        live = dict(result.live) if result is not None else {}
        for ref in registries:
            live[ref.address] = await self.registries.read(dict(ref.attributes))
        return ReadResult(live=live)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.kind == "registry":
            return await self.registries.apply(request)
        return await super().apply(request)

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.kind == "registry":
            return self.registries.plan(request)
        if request.kind == "proxy" and request.desired is not None and int(request.desired.get("replicas") or 1) != 1:
            raise UnsupportedError(
                f"{request.address}: the docker provider runs one proxy container per workspace "
                "(its port is published once); set replicas: 1"
            )
        return await super().plan(request)

    # -- optional abilities -----------------------------------------------------------------------

    def logs(self, request: LogRequest) -> AsyncIterator[LogLine]:
        """The output of the deployment's replica containers (or the proxy's), through the engine."""
        return self._logs(request)

    async def _logs(self, request: LogRequest) -> AsyncIterator[LogLine]:
        for line in await asyncio.to_thread(kept_lines, self.root / "logs", request):
            yield line  # replicas a rollout or restart removed
        client = await self.runtime.client()
        states = select(await self.runtime.containers(), request)
        async for line in read_container_logs(client, states, request):
            yield line

    async def collect_garbage(self, keep: set[str]) -> list[str]:
        """Remove this workspace's build images (and contexts) whose build address is not in ``keep``."""
        client = await self.runtime.client()
        builder = self.runtime.builder
        images = await asyncio.to_thread(
            client.images.list, filters={"label": [f"{ct.LABEL_WORKSPACE}={self.workspace}", f"{LABEL_KIND}=build"]}
        )
        removed: list[str] = []
        for image in images:
            address = (image.labels or {}).get(IMAGE_LABEL_ADDRESS, "")
            if address in keep:
                continue
            for tag in image.tags or [image.id]:
                try:
                    await asyncio.to_thread(client.images.remove, tag, noprune=False)
                except docker.errors.NotFound:
                    continue
                except docker.errors.APIError as exc:
                    if exc.status_code == 409:
                        continue  # a container still runs it (e.g. its build was `state rm`ed): keep it
                    raise ProviderError(f"cannot remove image {tag} of {address}: {exc.explanation or exc}") from None
                removed.append(f"image {tag} ({address})")
            model_key, number = _split_build_address(address)
            if model_key:
                await asyncio.to_thread(builder.remove_context, model_key, number)
        removed += await self._collect_service_images(client)
        if not any(address.startswith("build.") for address in keep):
            removed += await asyncio.to_thread(builder.remove_caches)
        return removed

    async def _collect_service_images(self, client: docker.DockerClient) -> list[str]:
        """Proxy and registry images of other cmlplan or mlflow versions that no container uses
        (shared by every workspace on the engine, so only unused ones)."""
        current = {"proxy": self.runtime.builder.proxy_tag(), "mlflow": mlflow_tag(self.base_image)}
        removed = []
        for kind, tag_now in current.items():
            for image in await asyncio.to_thread(client.images.list, filters={"label": f"{LABEL_KIND}={kind}"}):
                for tag in image.tags:
                    if tag == tag_now:
                        continue
                    try:
                        await asyncio.to_thread(client.images.remove, tag, noprune=False)
                    except docker.errors.APIError:
                        continue  # in use by a container (another workspace's): keep it
                    removed.append(f"image {tag} (an older {'proxy' if kind == 'proxy' else 'registry'} image)")
        return removed

    # -- builds -----------------------------------------------------------------------------------

    async def apply_build(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return ApplyResult(attributes=None)  # the image stays until `cmlplan gc`
        planned = request.planned
        check(request.address, "build", planned)
        client = await self.runtime.client()
        # before tagging anything: image tags are named after the workspace, like its containers
        await asyncio.to_thread(ct.check_owner, client, self.network, self.workspace, str(self.spec_dir))
        async with build_source(self.spec_dir, self.root, request.address, planned, request.progress) as inputs:
            image_request = ImageRequest(
                workspace=self.workspace, address=request.address, **inputs.request_fields(planned, request.progress)
            )
            try:
                outcome = await asyncio.to_thread(self.runtime.builder.build, image_request)
            except BuildError as exc:
                raise build_error(request.address, exc) from None
        return ApplyResult(
            attributes={
                **planned, "path": str(outcome.context_dir), "image": outcome.tag, "image_id": outcome.image_id,
                **recorded_manifest(planned, inputs),
            }
        )

def _split_build_address(address: str) -> tuple[str | None, int]:
    body = address.removeprefix("build.")
    key, sep, number = body.rpartition("#")
    if not sep or not number.isdigit() or "/" not in key:
        return None, 0
    return key, int(number)
