"""The kubernetes provider: the same specs as Kubernetes objects; Kubernetes schedules, supervises, rolls.

cmlplan keeps plan/apply, builds (images built as on Docker, pushed to ``kubernetes.image_registry``),
keys and the proxy's routing table; everything else is Kubernetes': a model is a Deployment whose
RollingUpdate (maxUnavailable 0) replaces pods only once new ones are ready, so a change of build
or settings is an update in place, not a replace. Apply waits for each rollout, checks the
model's examples through the API server's service proxy, and on failure applies the previous
objects again (the old pods never stopped serving). ``read`` lists the workspace's objects by
label, so objects deleted, scaled or edited by hand show as drift.

State records the objects of each resource as its ``processes`` (``Deployment/<name>``...), so
``release_leftovers`` removes labelled objects no state records.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from ...serving.defaults import METRICS_DSN_ENV
from ...values import UNKNOWN
from ..attributes import check
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
)
from ..buildfiles import BuildError, build_error
from ..deployments import proxy_environment, route_model, route_proxy
from ..images import ImageRequest
from ..probes import ProbeFailed, judge_answer
from ..registered import build_source, recorded_manifest
from ..routing import RoutingTable, parse_table, restore_model, snapshot_model
from . import names
from . import objects as ob
from .api import OWNED_KINDS, KubeApi, connect
from .images import DockerPublisher, ImagePublisher
from .observe import observed_deployment, observed_proxy, planned_objects
from .rollouts import wait_rollout

BUILD_COMPUTED = ("path", "image", "image_id")
EXAMPLE_TIMEOUT = 60.0


class KubernetesProvider:
    name = "kubernetes"
    kinds = frozenset({"build", "deployment", "proxy"})

    def __init__(
        self, context: ProviderContext, api: KubeApi | None = None, publisher: ImagePublisher | None = None
    ) -> None:
        self.context = context
        self.settings = context.settings.kubernetes
        self.workspace = context.workspace_id
        self.spec_dir = Path(context.spec_dir)
        self.root = Path(context.data_dir)
        self.target = ob.Target(
            workspace=self.workspace,
            namespace=self.settings.namespace,
            image_registry=self.settings.image_registry,
            image_pull_secret=self.settings.image_pull_secret,
            progress_deadline=int(self.settings.rollout_timeout),
        )
        self.routes = RoutingTable(Path(context.data_dir) / "run" / "routes.json", context.salt)
        self.publisher: ImagePublisher = publisher or DockerPublisher(
            Path(context.data_dir), context.settings.docker.base_image, self.target
        )
        self._api = api
        self._routes_lock = asyncio.Lock()
        self._namespace_checked = False

    # -- connection -------------------------------------------------------------------------------

    async def api(self) -> KubeApi:
        if self._api is None:
            client = await asyncio.to_thread(connect, self.settings.kubeconfig, self.settings.context)
            self._api = KubeApi(client, self.settings.namespace)
        if not self._namespace_checked:
            if not await asyncio.to_thread(self._api.namespace_exists):
                raise ProviderError(
                    f"namespace {self.settings.namespace!r} does not exist in the cluster; create it "
                    f"(kubectl create namespace {self.settings.namespace}) or set kubernetes.namespace"
                )
            self._namespace_checked = True
        return self._api

    def rollout_timeout(self) -> float:
        try:
            value = float(os.environ.get("CMLPLAN_ROLLOUT_TIMEOUT", ""))
        except ValueError:
            value = 0
        return value if value > 0 else float(self.settings.rollout_timeout)

    # -- read -------------------------------------------------------------------------------------

    async def live_objects(self) -> dict[str, dict[str, Any]]:
        """Every object of this workspace, by ``Kind/name``."""
        api = await self.api()
        selector = names.workspace_selector(self.workspace)
        found: dict[str, dict[str, Any]] = {}
        for kind in OWNED_KINDS:
            for item in await asyncio.to_thread(api.list, kind, selector):
                found[f"{kind}/{item['metadata']['name']}"] = item
        return found

    async def read(self, request: ReadRequest) -> ReadResult:
        if not any(ref.kind in ("deployment", "proxy") for ref in request.resources):
            return ReadResult(live={ref.address: dict(ref.attributes) for ref in request.resources})
        live_objects = await self.live_objects()
        live: dict[str, Attributes | None] = {}
        for ref in request.resources:
            attributes = dict(ref.attributes)
            if ref.kind == "deployment":
                live[ref.address] = observed_deployment(self.workspace, attributes, live_objects)
            elif ref.kind == "proxy":
                live[ref.address] = observed_proxy(self.workspace, attributes, live_objects)
            else:
                live[ref.address] = attributes  # images live in a registry: kept as recorded
        return ReadResult(live=live)

    # -- plan -------------------------------------------------------------------------------------

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.desired is None:
            return PlanResult(planned=None)
        current = request.current or {}
        planned = dict(request.desired)
        if request.kind == "build":
            for computed in BUILD_COMPUTED:
                planned[computed] = current.get(computed, UNKNOWN)
            return PlanResult(planned=planned, requires_replace=("hash",), computed=BUILD_COMPUTED)
        if request.kind == "deployment":
            if planned.get("autoscale") and request.current is not None and "replicas" in current:
                planned["replicas"] = current["replicas"]  # the autoscaler owns it
            planned["image"] = self.target.image(ob.model_image_tag(self.workspace, planned))
            manifests = ob.model_objects(self.target, request.address, planned, {})
            planned["processes"] = planned_objects(request.current, manifests)
            # every change is an update: the Deployment's RollingUpdate replaces pods without a gap
            return PlanResult(planned=planned, computed=("processes",))
        planned["image"] = self.target.image(self.publisher.proxy_tag())
        dsn = "(resolved at apply)" if planned.get("metrics_store") else None  # only the object list matters here
        manifests = ob.proxy_objects(self.target, request.address, planned, planned["image"], b"{}", dsn)
        planned["processes"] = planned_objects(request.current, manifests)
        return PlanResult(planned=planned, computed=("processes",))

    # -- apply ------------------------------------------------------------------------------------

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.kind == "build":
            return await self._apply_build(request)
        if request.kind == "deployment":
            if request.planned is None:
                return await self._undeploy(request)
            return await self._deploy(request)
        if request.kind == "proxy":
            return await self._apply_proxy(request)
        raise ProviderError(f"{request.address}: kind {request.kind!r} is not supported by provider 'kubernetes'")

    def force_conflicts(self) -> bool:
        """Take over fields other managers set: only when the Workspace or the caller asks."""
        return self.settings.force_conflicts or os.environ.get("CMLPLAN_K8S_FORCE_CONFLICTS") == "1"

    async def _apply_objects(self, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        api = await self.api()
        force = self.force_conflicts()
        return [await asyncio.to_thread(api.apply, manifest, names.MANAGER, force=force) for manifest in manifests]

    async def _delete_refs(self, refs: list[str]) -> None:
        api = await self.api()
        for ref in refs:
            kind, _, name = ref.partition("/")
            await asyncio.to_thread(api.delete, kind, name)

    async def _deploy(self, request: ApplyRequest) -> ApplyResult:
        address, prior, planned = request.address, request.prior, dict(request.planned or {})
        check(address, "deployment", planned)
        planned["image"] = self.target.image(ob.model_image_tag(self.workspace, planned))
        manifests = ob.model_objects(self.target, address, planned, request.secrets)
        refs = [ob.ref(m) for m in manifests]
        before = await asyncio.to_thread(snapshot_model, self.routes, str(planned["model"]))
        existed = prior is not None and await self._exists(prior)
        try:
            applied = await self._apply_objects(manifests)
            stale = [p["name"] for p in (prior or {}).get("processes") or [] if p.get("name") not in refs]
            await self._delete_refs([r for r in stale if "/" in r])
            deployment = next(a for a in applied if a.get("kind") == "Deployment")
            name = deployment["metadata"]["name"]
            generation = int(deployment["metadata"].get("generation") or 1)
            await wait_rollout(await self.api(), name, generation, self.rollout_timeout(), request.progress)
            if not planned.get("stopped"):
                await self._check_examples(request, planned, name)
            await self._route(request, planned)
        except ProviderError as exc:
            outcome = await self._roll_back(request, prior if existed else None, refs, before)
            what = "new replicas failed, the running ones keep serving" if existed else "the first rollout failed"
            raise ProviderError(f"{address}: {what}: {exc}; {outcome}") from None
        request.progress(f"serving build {planned['build']} from Deployment/{names.model_object(self.workspace, planned['project'], planned['name'])}")
        return ApplyResult(attributes={**planned, "processes": [{"name": r} for r in refs]})

    async def _exists(self, prior: Attributes) -> bool:
        api = await self.api()
        name = names.model_object(self.workspace, str(prior.get("project")), str(prior.get("name")))
        return await asyncio.to_thread(api.get, "Deployment", name) is not None

    async def _roll_back(
        self, request: ApplyRequest, prior: Attributes | None, refs: list[str], routes_before: dict[str, Any]
    ) -> str:
        """Put back what served before the failed apply: the previous objects, or nothing on a create."""
        model = str((request.planned or {}).get("model"))
        await asyncio.to_thread(restore_model, self.routes, model, routes_before)
        try:
            if prior is None:
                await self._delete_refs(refs)
                await self._publish_routes(request)
                return "its objects were removed"
            previous = [m for m in ob.model_objects(self.target, request.address, prior, request.secrets) if m["kind"] != "Secret"]
            applied = await self._apply_objects(previous)
            await self._delete_refs([r for r in refs if r not in {ob.ref(m) for m in previous} and not r.startswith("Secret/")])
            await self._publish_routes(request)
            deployment = next(a for a in applied if a.get("kind") == "Deployment")
            request.progress("rolling back to the previous objects")
            await wait_rollout(
                await self.api(), deployment["metadata"]["name"], int(deployment["metadata"].get("generation") or 1),
                self.rollout_timeout(), request.progress, what="rollback",
            )
        except ProviderError as exc:
            return f"putting back the previous objects failed too: {exc}"
        return f"the previous objects (build {prior.get('build')}) are applied again and keep serving"

    async def _check_examples(self, request: ApplyRequest, planned: Attributes, service: str) -> None:
        examples = planned.get("examples") or []
        api = await self.api()
        for example in examples:
            status, answer = await asyncio.to_thread(
                api.service_post, service, ob.SLOT_BASE_PORT, "/predict", example.get("input"), EXAMPLE_TIMEOUT
            )
            try:
                judge_answer(example, status, answer)
            except ProbeFailed as exc:
                raise ProviderError(str(exc)) from None
        if examples:
            request.progress(f"the new replicas answered {len(examples)} example(s)")

    async def _seed_routes(self) -> None:
        """Start from the cluster's routing table when this machine has no copy of it yet, so the
        first write does not drop the other models' routes."""
        if self.routes.path.exists():
            return
        api = await self.api()
        secret = await asyncio.to_thread(api.get, "Secret", names.routes_secret(self.workspace))
        encoded = ((secret or {}).get("data") or {}).get("routes.json")
        if not encoded:
            return
        table = parse_table(base64.b64decode(encoded), f"Secret/{names.routes_secret(self.workspace)}")
        await asyncio.to_thread(self.routes.change, lambda data: data.update({**table, "salt": data["salt"]}))

    async def _route(self, request: ApplyRequest, planned: Attributes) -> None:
        await self._seed_routes()
        slots = ob.slot_urls(self.target, planned)
        await asyncio.to_thread(route_model, self.routes, planned, slots)
        await self._publish_routes(request)

    async def _publish_routes(self, request: ApplyRequest) -> None:
        """Copy the routing table into its Secret and roll the proxy to it (when a proxy runs)."""
        async with self._routes_lock:
            api = await self.api()
            content = await asyncio.to_thread(self._routes_bytes)
            secret = ob.routes_object(self.target, content)
            await asyncio.to_thread(api.apply, secret, names.MANAGER, force=self.force_conflicts())
            proxy = await asyncio.to_thread(api.get, "Deployment", names.proxy_object(self.workspace))
            if proxy is not None:
                await self._roll_proxy(api, content, request, before=int(proxy["metadata"].get("generation") or 0))

    async def _roll_proxy(
        self, api: KubeApi, content: bytes, request: ApplyRequest, what: str = "proxy reload", before: int = -1
    ) -> None:
        """Put the table's digest into the proxy's pod template and wait for the pods that read it."""
        bump = ob.routes_bump(self.target, content)
        bumped = await asyncio.to_thread(api.apply, bump, names.ROUTES_MANAGER, force=self.force_conflicts())
        generation = int(bumped["metadata"].get("generation") or 1)
        if generation == before:
            return  # the same table: nothing rolls
        await wait_rollout(api, bumped["metadata"]["name"], generation, self.rollout_timeout(), request.progress, what=what)

    def _routes_bytes(self) -> bytes:
        table = self.routes.read()
        return json.dumps(table, indent=1, sort_keys=True).encode()

    async def _undeploy(self, request: ApplyRequest) -> ApplyResult:
        prior = request.prior or {}
        await self._seed_routes()
        await asyncio.to_thread(self.routes.set_model, str(prior.get("model")), None)
        await self._publish_routes(request)
        label = names.address_label(request.address)
        refs = [p["name"] for p in prior.get("processes") or [] if "/" in str(p.get("name"))]
        for ref, item in (await self.live_objects()).items():
            if (item["metadata"].get("labels") or {}).get(names.LABEL_ADDRESS) == label and ref not in refs:
                refs.append(ref)
        request.progress(f"deleting {', '.join(refs) or 'nothing (already gone)'}")
        await self._delete_refs(refs)
        return ApplyResult(attributes=None)

    async def _apply_proxy(self, request: ApplyRequest) -> ApplyResult:
        prior, planned = request.prior, request.planned
        if planned is None:
            refs = [p["name"] for p in (prior or {}).get("processes") or [] if "/" in str(p.get("name"))]
            await self._delete_refs(refs)
            return ApplyResult(attributes=None)
        check(request.address, "proxy", planned)
        image = await asyncio.to_thread(self.publisher.proxy, request.progress)
        await self._seed_routes()
        # no SQLite default: the routes are a read-only Secret shared by every proxy pod
        await asyncio.to_thread(partial(route_proxy, self.routes, planned, "0.0.0.0", sqlite=False))
        dsn = proxy_environment(request.address, planned, request.secrets).get(METRICS_DSN_ENV)
        async with self._routes_lock:
            content = await asyncio.to_thread(self._routes_bytes)
            manifests = ob.proxy_objects(self.target, request.address, {**planned}, image, content, dsn)
            await self._apply_objects(manifests)
            await self._roll_proxy(await self.api(), content, request, what="proxy rollout")
        request.progress(
            f"proxy serving on Service/{names.proxy_object(self.workspace)}:{planned['port']} "
            f"(kubectl port-forward -n {self.target.namespace} svc/{names.proxy_object(self.workspace)} {planned['port']})"
        )
        return ApplyResult(attributes={**planned, "image": image, "processes": [{"name": ob.ref(m)} for m in manifests]})

    # -- builds -----------------------------------------------------------------------------------

    async def _apply_build(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return ApplyResult(attributes=None)  # the image stays in the registry
        planned = request.planned
        check(request.address, "build", planned)
        async with build_source(self.spec_dir, self.root, request.address, planned, request.progress) as inputs:
            image_request = ImageRequest(
                workspace=self.workspace, address=request.address, **inputs.request_fields(planned, request.progress)
            )
            try:
                published = await asyncio.to_thread(self.publisher.build, image_request)
            except BuildError as exc:
                raise build_error(request.address, exc) from None
        return ApplyResult(
            attributes={
                **planned, "path": published.context_dir, "image": published.ref, "image_id": published.image_id,
                **recorded_manifest(planned, inputs),
            }
        )

    # -- optional abilities -----------------------------------------------------------------------

    async def release_leftovers(self, recorded: set[str]) -> list[str]:
        """Delete this workspace's objects that no state records (a killed or failed run's)."""
        removed = []
        for ref, item in (await self.live_objects()).items():
            if ref in recorded:
                continue
            await self._delete_refs([ref])
            owner = (item["metadata"].get("annotations") or {}).get(names.ANNOTATION_ADDRESS, "no resource")
            removed.append(f"{ref} (of {owner}, not in state)")
        return removed

    async def close(self) -> None:
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None
        await asyncio.to_thread(self.publisher.close)
