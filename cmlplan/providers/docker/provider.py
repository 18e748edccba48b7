"""The docker provider: builds as images, replicas and the proxy as containers on one user network.

It follows the local provider step for step (same attributes, same replace paths, same rollout):
new replica containers start, pass /healthz and every example (probed from the host on their
network IP), the proxy's route switches to them (``http://<container name>:8080``, resolved by
Docker's DNS on the workspace network) and the rollout waits until the proxy serves the new routing
generation; then the old containers drain (SIGTERM, up to 40 s) and are removed. If the new ones
fail, they are removed and the old ones keep serving.

Limits are the engine's: ``memory`` is the container's memory limit (swap included, so a replica
past it is OOM-killed and restarted by its on-failure policy), ``cpu`` is ``nano_cpus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from pathlib import Path
from typing import Any

import aiohttp
import docker
import docker.errors

from ...values import UNKNOWN
from ..base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    PlanRequest,
    PlanResult,
    ProviderContext,
    ProviderError,
    ReadRequest,
    ReadResult,
    UnsupportedError,
)
from ..deployments import (
    DEPLOYMENT_REPLACE_PATHS,
    HEALTH_TIMEOUT,
    PROXY_REPLACE_PATHS,
    prediction_timeout,
    process_names,
    proxy_url,
    replicas_complete,
    route_model,
    route_proxy,
)
from ..local.builds import BuildError, BuildFailed
from ..probes import ProbeFailed, check_example, wait_generation, wait_healthy
from ..routing import RoutingTable
from ..source import FileEntry
from . import containers as ct
from .images import LABEL_ADDRESS as IMAGE_LABEL_ADDRESS
from .images import LABEL_KIND, ImageBuilder, ImageRequest, image_tag

STOP_TIMEOUT = 40  # a draining replica may finish a prediction (the proxy gives up after 35 s)
ROUTES_MOUNT = "/routes"


class DockerProvider:
    name = "docker"
    kinds = frozenset({"build", "deployment", "proxy", "registry"})

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.root = Path(context.data_dir)
        self.spec_dir = Path(context.spec_dir)
        self.workspace = context.workspace_id
        settings = dict(context.settings.get("docker") or {})
        self.base_image = str(settings.get("base_image") or "python:3.11-slim")
        self.publish_host = str(settings.get("publish_host") or "127.0.0.1")
        self.network = f"cmlplan-{self.workspace}"
        self.routes = RoutingTable(self.root / "run" / "routes.json", context.salt)
        self._client: docker.DockerClient | None = None
        self._builder: ImageBuilder | None = None
        self._session: aiohttp.ClientSession | None = None
        self._network_ready = False
        self._network_lock = asyncio.Lock()

    # -- the four verbs -------------------------------------------------------------------------

    async def read(self, request: ReadRequest) -> ReadResult:
        if not request.resources:
            return ReadResult(live={})
        client = await self._docker()
        found = await asyncio.to_thread(ct.list_workspace, client, self.workspace, self.network, self.context.salt)
        by_name = {c.name: c for c in found}
        live: dict[str, Attributes | None] = {}
        for ref in request.resources:
            attributes = dict(ref.attributes)
            if ref.kind == "build":
                tag = attributes.get("image")
                image = await asyncio.to_thread(self.builder.image, str(tag)) if tag else None
                ok = image is not None and image["id"] == attributes.get("image_id")
                live[ref.address] = attributes if ok else None
            elif ref.kind == "deployment":
                live[ref.address] = _live_processes(attributes, by_name)
            elif ref.kind == "proxy":
                observed = _live_processes(attributes, by_name)
                live[ref.address] = observed if observed.get("processes") else None
        return ReadResult(live=live)

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.kind == "registry":
            raise UnsupportedError(f"{request.address}: ModelRegistry is not supported yet by provider 'docker'")
        if request.desired is None:
            return PlanResult(planned=None)
        current = request.current or {}
        planned = dict(request.desired)
        if request.kind == "build":
            for computed in ("path", "image", "image_id"):
                planned[computed] = current.get(computed, UNKNOWN)
            return PlanResult(planned=planned, requires_replace=("hash",))
        if request.kind == "deployment":
            planned["processes"] = current.get("processes", UNKNOWN) if request.current else UNKNOWN
            if request.current and not replicas_complete(current, planned):
                planned["processes"] = UNKNOWN  # containers vanished or changed: apply starts them again
            return PlanResult(
                planned=planned, requires_replace=DEPLOYMENT_REPLACE_PATHS, create_before_destroy=True
            )
        if int(planned.get("replicas") or 1) != 1:
            raise UnsupportedError(
                f"{request.address}: the docker provider runs one proxy container per workspace "
                "(its port is published once); set replicas: 1"
            )
        planned["processes"] = current.get("processes", UNKNOWN) if request.current else UNKNOWN
        return PlanResult(planned=planned, requires_replace=PROXY_REPLACE_PATHS)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.kind == "build":
            return await self._apply_build(request)
        if request.kind == "deployment":
            return await self._apply_deployment(request)
        if request.kind == "proxy":
            return await self._apply_proxy(request)
        raise UnsupportedError(f"{request.address}: kind {request.kind!r} is not supported by provider 'docker'")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- optional: garbage ----------------------------------------------------------------------

    async def collect_garbage(self, keep: set[str]) -> list[str]:
        """Remove this workspace's build images (and contexts) whose build address is not in ``keep``."""
        client = await self._docker()
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
                await asyncio.to_thread(self.builder.remove_context, model_key, number)
        removed += await self._collect_proxy_images(client)
        if not any(address.startswith("build.") for address in keep):
            removed += await asyncio.to_thread(self.builder.remove_caches)
        return removed

    async def _collect_proxy_images(self, client: docker.DockerClient) -> list[str]:
        """Proxy images of other cmlplan versions that no container uses (shared, so only unused ones)."""
        current = self.builder.proxy_tag()
        removed = []
        for image in await asyncio.to_thread(client.images.list, filters={"label": f"{LABEL_KIND}=proxy"}):
            for tag in image.tags:
                if tag == current:
                    continue
                try:
                    await asyncio.to_thread(client.images.remove, tag, noprune=False)
                except docker.errors.APIError:
                    continue  # in use by a container (another workspace's proxy): keep it
                removed.append(f"image {tag} (an older proxy image)")
        return removed

    # -- builds -----------------------------------------------------------------------------------

    async def _apply_build(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return ApplyResult(attributes=None)  # the image stays until `cmlplan gc`
        planned = request.planned
        model_key = str(planned["model"]).removeprefix("model.")
        source = (self.spec_dir / str(planned["source_path"])).resolve()
        manifest = {
            path: FileEntry(sha256=e["sha256"], size=e["size"], lines=e["lines"])
            for path, e in planned["manifest"].items()
        }
        requirements_text = ""
        if planned.get("requirements_file"):
            requirements_text = (source / planned["requirements_file"]).read_text(encoding="utf-8", errors="replace")
        client = await self._docker()
        # before tagging anything: image tags are named after the workspace, like its containers
        await asyncio.to_thread(ct.check_owner, client, self.network, self.workspace, str(self.spec_dir))
        image_request = ImageRequest(
            workspace=self.workspace,
            address=request.address,
            model_key=model_key,
            number=int(planned["number"]),
            build_hash=str(planned["hash"]),
            source_dir=source,
            manifest=manifest,
            python=str(planned["python"]),
            requirements_text=requirements_text,
            build_script=planned.get("build_script"),
            progress=request.progress,
        )
        try:
            outcome = await asyncio.to_thread(self.builder.build, image_request)
        except BuildFailed as exc:
            lines = "\n".join(f"  | {line}" for line in exc.log_tail[-15:])
            raise ProviderError(f"{request.address}: {exc}\n{lines}" if lines else f"{request.address}: {exc}") from None
        except BuildError as exc:
            raise ProviderError(f"{request.address}: {exc}") from None
        return ApplyResult(
            attributes={**planned, "path": str(outcome.context_dir), "image": outcome.tag, "image_id": outcome.image_id}
        )

    # -- deployments ----------------------------------------------------------------------------

    async def _apply_deployment(self, request: ApplyRequest) -> ApplyResult:
        prior, planned = request.prior, request.planned
        client = await self._docker()
        if planned is None:
            assert prior is not None
            self.routes.set_model(str(prior.get("model")), None)
            await self._reload_proxy()
            await self._remove(process_names(prior), request)
            await self._remove_network_if_idle()
            return ApplyResult(attributes=None)
        await self._ensure_network()
        model_key = str(planned["model"]).removeprefix("model.")
        tag = image_tag(self.workspace, model_key, int(planned["build"]))
        image = await asyncio.to_thread(self.builder.image, tag)
        if image is None:
            raise ProviderError(
                f"{request.address}: image {tag} of build {planned['build']} is not in the Docker engine; "
                "run apply again to rebuild it (or pin another build)"
            )
        fresh = prior is None or request.replace
        keep: list[dict[str, Any]] = []
        if not fresh:
            found = await asyncio.to_thread(ct.list_workspace, client, self.workspace, self.network, self.context.salt)
            by_name = {c.name: c for c in found}
            keep = list(_live_processes(prior or {}, by_name).get("processes") or [])
            kept = {p["name"] for p in keep}
            broken = [n for n in process_names(prior or {}) if n not in kept and n in by_name]
            if broken:
                request.progress(f"removing {len(broken)} stopped or changed container(s)")
                await self._remove(broken, request, quiet=True)
        wanted = 0 if planned.get("stopped") else int(planned["replicas"])
        keep.sort(key=lambda p: p["index"])
        surplus, keep = keep[wanted:], keep[:wanted]
        used = {p["index"] for p in keep}
        indexes = [i for i in range(wanted * 2 + len(used)) if i not in used][: wanted - len(keep)]
        started: list[dict[str, Any]] = []
        try:
            # containers start and warm up side by side; each must pass before any route changes
            outcomes = await asyncio.gather(
                *(self._start_replica(request, planned, tag, index) for index in indexes), return_exceptions=True
            )
            started = [o for o in outcomes if isinstance(o, dict)]
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                raise failures[0]
            await self._verify(request, planned, started)
        except (ProbeFailed, ProviderError) as exc:
            await self._remove([p["name"] for p in started], request, quiet=True)
            raise ProviderError(f"{request.address}: new replicas failed, the running ones keep serving: {exc}") from None
        processes = sorted(keep + started, key=lambda p: p["index"])
        await self._route(request, planned, processes)
        old = [p["name"] for p in surplus]
        if fresh and prior is not None:
            old += process_names(prior)
        await self._remove(old, request)
        request.progress(f"serving with {len(processes)} replica(s) of build {planned['build']}")
        return ApplyResult(attributes={**planned, "processes": [_public(p) for p in processes]})

    async def _start_replica(self, request: ApplyRequest, planned: Attributes, tag: str, index: int) -> dict[str, Any]:
        client = await self._docker()
        project, name, deployment_id = planned["project"], planned["name"], planned["deployment_id"]
        container = f"cmlplan-{self.workspace}-{project}-{name}-d{deployment_id}-{index}"
        replica_id = f"{name}-{deployment_id}-{index}-{project}"
        cpu = float(planned.get("cpu") or 1)
        threads = str(max(1, math.ceil(cpu)))
        env = {str(k): request.secrets.get(f"env.{k}", str(v)) for k, v in (planned.get("env") or {}).items()}
        env.update({"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        command = [
            "python", "-m", "cmlplan.serving.replica", "--source", "/app", "--file", str(planned["file"]),
            "--function", str(planned["function"]), "--host", "0.0.0.0", "--port", str(ct.REPLICA_PORT),
            "--replica-id", replica_id,
        ]
        model_key = str(planned["model"]).removeprefix("model.")
        if self._runtime_has_watchdog(model_key, int(planned["build"])):  # images of an older cmlplan lack it
            command += ["--prediction-timeout", f"{prediction_timeout(planned):g}"]
        memory = int(planned["memory"])
        labels = {
            ct.LABEL_WORKSPACE: self.workspace,
            ct.LABEL_ADDRESS: request.address,
            ct.LABEL_BUILD: str(planned["build"]),
            ct.LABEL_ROLE: "replica",
        }
        request.progress(f"starting replica {index + 1} ({container})")

        def run() -> ct.ContainerState:
            ct.remove(client, container, stop_timeout=5)  # a leftover of a failed rollout
            client.containers.run(
                tag, command, name=container, detach=True, environment=env, labels=labels,
                network=self.network, restart_policy={"Name": "on-failure"},
                mem_limit=memory, memswap_limit=memory, nano_cpus=int(min(cpu, self._cpus()) * 1e9),
                init=False,
            )
            state = ct.get(client, container, self.network, self.context.salt)
            if state is None:
                raise ProviderError(f"container {container} vanished right after it started")
            return state

        try:
            state = await asyncio.to_thread(run)
        except docker.errors.DockerException as exc:
            raise ProviderError(f"cannot start {container}: {exc}") from None
        return {
            "name": container, "index": index, "replica_id": replica_id,
            "url": f"http://{container}:{ct.REPLICA_PORT}", "container_id": state.id[:12],
            "image_id": state.image_id, "env_hash": state.env_hash, "probe": f"http://{state.ip}:{ct.REPLICA_PORT}",
        }

    async def _verify(self, request: ApplyRequest, planned: Attributes, started: list[dict[str, Any]]) -> None:
        session = await self._http()
        examples = planned.get("examples") or []

        async def verify(process: dict[str, Any]) -> None:
            await wait_healthy(session, process["probe"], HEALTH_TIMEOUT, self._crash_reason(process["name"]))
            request.progress(f"replica {process['replica_id']} is healthy")
            for example in examples:
                await check_example(session, process["probe"], example, timeout=60.0)
            if examples:
                request.progress(f"replica {process['replica_id']} answered {len(examples)} example(s)")

        outcomes = await asyncio.gather(*(verify(p) for p in started), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _crash_reason(self, name: str) -> Any:
        client = self._client

        def reason() -> str | None:
            assert client is not None
            state = ct.get(client, name, self.network, self.context.salt)
            if state is None:
                return f"container {name} is gone"
            if state.status in ("exited", "dead") or state.restarts > 0 or state.oom_killed:
                why = "OOM-killed" if state.oom_killed else f"exit code {state.exit_code}"
                return (
                    f"replica {name} exited ({why}, restarts {state.restarts}): {ct.logs_tail(client, name)} "
                    f"(log: docker logs {name})"
                )
            return None

        return reason

    async def _route(self, request: ApplyRequest, planned: Attributes, processes: list[dict[str, Any]]) -> None:
        generation = route_model(self.routes, planned, processes)
        if await self._reload_proxy(generation):
            request.progress(f"the proxy routes to {len(processes)} replica{'s' if len(processes) != 1 else ''}")

    async def _reload_proxy(self, generation: int | None = None) -> bool:
        """SIGHUP the running proxy containers; wait until the proxy serves ``generation``."""
        client = await self._docker()
        found = await asyncio.to_thread(ct.list_workspace, client, self.workspace, self.network, self.context.salt)
        proxies = [c for c in found if c.labels.get(ct.LABEL_ROLE) == "proxy" and c.running]
        if not proxies:
            return False
        for proxy in proxies:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await asyncio.to_thread(client.api.kill, proxy.id, "SIGHUP")
        if generation is None:
            return True
        url = proxy_url(self.routes.read().get("listen") or {})
        return await wait_generation(await self._http(), url, generation) if url else False

    async def _remove(self, names: list[str], request: ApplyRequest, quiet: bool = False) -> None:
        if not names:
            return
        if not quiet:
            request.progress(f"draining and removing {len(names)} old container(s)")
        client = await self._docker()
        await asyncio.gather(*(asyncio.to_thread(ct.remove, client, n, STOP_TIMEOUT) for n in names))

    # -- the proxy --------------------------------------------------------------------------------

    async def _apply_proxy(self, request: ApplyRequest) -> ApplyResult:
        prior, planned = request.prior, request.planned
        client = await self._docker()
        if planned is None or request.replace:
            if prior is not None:
                await self._remove(process_names(prior), request)
            if planned is None:
                await self._remove_network_if_idle()
                return ApplyResult(attributes=None)
        await self._ensure_network()
        image = await asyncio.to_thread(self.builder.ensure_proxy_image, request.progress)

        generation = route_proxy(self.routes, planned, self.publish_host)
        name = f"cmlplan-{self.workspace}-proxy-0"
        port = int(planned["port"])
        state = await asyncio.to_thread(ct.get, client, name, self.network, self.context.salt)
        started = False
        if state is None or not state.running or state.labels.get("cmlplan.image") != image:
            request.progress(f"starting {name} on {self.publish_host}:{port}")
            command = [
                "python", "-m", "cmlplan.serving.proxy", "--routes", f"{ROUTES_MOUNT}/routes.json",
                "--host", "0.0.0.0", "--port", str(port),
            ]
            labels = {
                ct.LABEL_WORKSPACE: self.workspace, ct.LABEL_ADDRESS: request.address,
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
                    volumes={str(self.routes.path.parent): {"bind": ROUTES_MOUNT, "mode": "ro"}},
                )

            try:
                await asyncio.to_thread(run)
            except docker.errors.DockerException as exc:
                raise ProviderError(f"{request.address}: cannot start {name}: {exc}") from None
            started = True
        url = proxy_url({"host": self.publish_host, "port": port})
        assert url is not None
        if started:
            await wait_healthy(await self._http(), url, 30.0, self._crash_reason(name))
        await self._reload_proxy(generation)
        state = await asyncio.to_thread(ct.get, client, name, self.network, self.context.salt)
        processes = [{"name": name, "index": 0, "container_id": state.id[:12] if state else None}]
        request.progress(f"proxy serving on {url}/model")
        return ApplyResult(attributes={**planned, "processes": processes})

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def builder(self) -> ImageBuilder:
        if self._builder is None:
            raise ProviderError("internal: the Docker client is not connected yet")
        return self._builder

    async def _docker(self) -> docker.DockerClient:
        if self._client is None:
            client = await asyncio.to_thread(ct.connect)
            if self._client is None:  # another task may have connected meanwhile
                self._client = client
                self._builder = ImageBuilder(client.api, self.root, self.base_image)
            else:
                client.close()
        return self._client

    def _runtime_has_watchdog(self, model_key: str, number: int) -> bool:
        """Whether the build's image carries the prediction watchdog (its context holds the runtime)."""
        runtime = self.builder.context_dir(model_key, number) / "runtime" / "cmlplan" / "serving" / "replica"
        return (runtime / "watchdog.py").is_file()

    def _cpus(self) -> float:
        assert self._client is not None
        if not hasattr(self, "_ncpu"):
            self._ncpu = float(self._client.info().get("NCPU") or os.cpu_count() or 1)
        return self._ncpu

    async def _ensure_network(self) -> None:
        async with self._network_lock:  # deployments apply in parallel; one creates the network
            if not self._network_ready:
                client = await self._docker()
                await asyncio.to_thread(ct.ensure_network, client, self.network, self.workspace, str(self.spec_dir))
                self._network_ready = True

    async def _remove_network_if_idle(self) -> None:
        client = await self._docker()
        found = await asyncio.to_thread(ct.list_workspace, client, self.workspace, self.network, self.context.salt)
        if not found:
            await asyncio.to_thread(ct.remove_network, client, self.network)
            self._network_ready = False

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _live_processes(attributes: Attributes, containers: dict[str, ct.ContainerState]) -> Attributes:
    """The recorded attributes with ``processes`` as the engine sees them now.

    A container that is gone, not running, or runs another image or environment than the one
    recorded is left out, so the plan sees fewer replicas than wanted and apply repairs it.
    """
    recorded = attributes.get("processes")
    if not isinstance(recorded, list):
        return attributes
    observed = []
    for process in recorded:
        state = containers.get(process.get("name"))
        if state is None or not state.running:
            continue
        if "image_id" in process and state.image_id != process["image_id"]:
            continue
        if "env_hash" in process and state.env_hash != process["env_hash"]:
            continue
        observed.append({**process, "container_id": state.id[:12]})
    return {**attributes, "processes": observed}


def _public(process: dict[str, Any]) -> dict[str, Any]:
    """What state records of a replica: the probe URL is the host's view of the moment."""
    return {k: v for k, v in process.items() if k != "probe"}




def _split_build_address(address: str) -> tuple[str | None, int]:
    body = address.removeprefix("build.")
    key, sep, number = body.rpartition("#")
    if not sep or not number.isdigit() or "/" not in key:
        return None, 0
    return key, int(number)
