"""The one rollout, over any ``ReplicaRuntime``: no gap in serving, and no half-switched model.

start new replicas -> wait for /healthz and every example input -> write the route -> wait until
every proxy confirms the routing generation -> drain and remove the old replicas. A failure before
the switch (a replica never healthy, an example failing, a proxy that never confirms) puts the
route back, removes the new replicas and fails the apply; the old replicas keep serving.

Replica names carry a random token per rollout, and the engine records a deployment id before the
rollout starts, so replicas left by a killed run never take a later run's names: they are
orphans (running, owned by a deployment, not recorded), shown as drift and removed after the next
switch, or by ``remove_leftovers`` on destroy and gc.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from .attributes import check
from .base import ApplyRequest, ApplyResult, Attributes, ProviderError
from .deployments import (
    needs_proxy_restart,
    needs_restart,
    process_names,
    proxy_environment,
    proxy_url,
    route_model,
    route_proxy,
)
from .probes import ProbeFailed, check_example, proxy_generation, wait_healthy
from .routing import RoutingTable, restore_model, snapshot_model
from .runtime import LiveReplica, ReplicaRuntime, ReplicaSpec, StartedReplica, replica_token

EXAMPLE_TIMEOUT = 60.0
PROXY_START_TIMEOUT = 30.0
_RESIGNAL_EVERY = 10.0  # a SIGHUP that reached a proxy still starting is lost: send it again


def _seconds(name: str, default: float) -> float:
    """A timeout from the environment (tests shorten them), else ``default``."""
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def health_timeout() -> float:
    return _seconds("CMLPLAN_HEALTH_TIMEOUT", 120.0)


def proxy_confirm_timeout() -> float:
    return _seconds("CMLPLAN_PROXY_CONFIRM_TIMEOUT", 30.0)


class ProxyLink:
    """Tells the proxies to reload and waits until they serve a routing generation.

    Each sample is a new connection, so proxies sharing one port (SO_REUSEPORT) are each asked in
    turn; with N proxies, 4N samples in a row must show the generation.
    """

    def __init__(self, runtime: ReplicaRuntime, routes: RoutingTable) -> None:
        self.runtime = runtime
        self.routes = routes

    async def confirm(self, generation: int, timeout: float | None = None) -> bool | None:
        """True once confirmed, False when the time ran out, None when no proxy runs (it reads at start)."""
        count = await self.runtime.signal_proxies()
        url = proxy_url((await asyncio.to_thread(self.routes.read)).get("listen") or {})
        if count == 0 or url is None:
            return None
        needed = 1 if count == 1 else 4 * count
        limit = proxy_confirm_timeout() if timeout is None else timeout
        deadline = time.monotonic() + limit
        resignal = time.monotonic() + _RESIGNAL_EVERY
        seen = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            while time.monotonic() < deadline:
                served = await proxy_generation(session, url)
                seen = seen + 1 if served is not None and served >= generation else 0
                if seen >= needed:
                    return True
                if time.monotonic() >= resignal:
                    await self.runtime.signal_proxies()
                    resignal = time.monotonic() + _RESIGNAL_EVERY
                await asyncio.sleep(0.05 if seen else 0.1)
        return False


class Rollout:
    """Deployments and the proxy of one workspace, over ``runtime``; one per provider instance."""

    def __init__(self, runtime: ReplicaRuntime, routes: RoutingTable) -> None:
        self.runtime = runtime
        self.routes = routes
        self.link = ProxyLink(runtime, routes)
        self._session: aiohttp.ClientSession | None = None

    # -- reading ----------------------------------------------------------------------------------

    async def live(self) -> dict[str, LiveReplica]:
        return {r.name: r for r in await self.runtime.observe()}

    @staticmethod
    def observed(attributes: Attributes, live: dict[str, LiveReplica], owner: str | None = None) -> Attributes:
        """The recorded attributes with ``processes`` as the runtime sees them now.

        A recorded process that is gone, not running, or runs another image or environment than
        recorded is left out (the plan sees fewer replicas and apply starts them again). With
        ``owner``, replicas it runs that no state records are added as ``{"name", "orphan": true}``.
        """
        recorded = attributes.get("processes")
        if not isinstance(recorded, list):
            return attributes
        processes = []
        for process in recorded:
            if not isinstance(process, dict) or process.get("orphan"):
                continue
            found = live.get(str(process.get("name")))
            if found is None or not found.running:
                continue
            if any(key in process and process[key] != value for key, value in found.identity.items()):
                continue
            processes.append({**process, **found.facts})
        if owner is not None:
            known = {p.get("name") for p in recorded if isinstance(p, dict)}
            processes += [{"name": n, "orphan": True} for n in sorted(_orphans(live.values(), owner, known))]
        return {**attributes, "processes": processes}

    # -- deployments ------------------------------------------------------------------------------

    async def deploy(self, request: ApplyRequest) -> ApplyResult:
        address, prior, planned = request.address, request.prior, request.planned
        assert planned is not None
        check(address, "deployment", planned)
        await self.runtime.prepare()
        build = await self.runtime.locate_build(address, planned)
        fresh = prior is None or request.replace
        keep: list[dict[str, Any]] = []
        if not fresh:
            live = await self.live()
            keep = list(self.observed(prior or {}, live).get("processes") or [])
            kept = set(process_names({"processes": keep}))
            orphaned = {p.get("name") for p in (prior or {}).get("processes") or [] if p.get("orphan")}
            broken = [n for n in process_names(prior or {}) if n not in kept and n not in orphaned and n in live]
            if broken:
                request.progress(f"removing {len(broken)} stopped or changed replica(s)")
                await self._remove(broken)
        wanted = 0 if planned.get("stopped") else int(planned["replicas"])
        keep.sort(key=lambda p: p["index"])
        surplus, keep = keep[wanted:], keep[:wanted]
        if keep and not fresh and needs_restart(prior, planned):
            request.progress(f"restarting {len(keep)} replica(s) one at a time for the new request_timeout")
            keep = await self.roll(request, planned, build, keep)
        used = {p["index"] for p in keep}
        indexes = [i for i in range(wanted * 2 + len(used)) if i not in used][: wanted - len(keep)]
        token = replica_token()
        specs = [
            ReplicaSpec(address, planned, build, index, token, request.secrets, request.progress) for index in indexes
        ]
        started: list[StartedReplica] = []
        try:
            await self._start_all(specs, started)
            await self._verify(request, planned, started)
        except (ProbeFailed, ProviderError) as exc:
            await self._remove([s.name for s in started])
            raise ProviderError(f"{address}: new replicas failed, the running ones keep serving: {exc}") from None
        processes = sorted(keep + [s.record for s in started], key=lambda p: p["index"])
        await self._switch(request, planned, processes, started)
        old = [p["name"] for p in surplus] + (process_names(prior or {}) if fresh else [])
        old = [n for n in old if n not in {p["name"] for p in processes}]
        if old:
            request.progress(f"draining and stopping {len(old)} old replica(s)")
            await self._remove(old)
        live = await self.live()
        orphans = sorted(_orphans(live.values(), address, {p["name"] for p in processes}))
        if orphans:
            request.progress(f"removing {len(orphans)} replica(s) no state recorded: {', '.join(orphans)}")
            await self._remove(orphans)
        processes = [{**p, **(live[p["name"]].facts if p["name"] in live else {})} for p in processes]
        request.progress(f"serving with {len(processes)} replica(s) of build {planned['build']}")
        return ApplyResult(attributes={**planned, "processes": processes})

    async def roll(
        self, request: ApplyRequest, planned: Attributes, build: Any, processes: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Replace each of ``processes`` by a fresh replica of the same index, one at a time.

        Each new replica is healthy and has answered the examples before the route moves to it and
        the old one drains, so as many replicas serve throughout and no request fails. A failure
        removes the new replica and leaves the route on the ones already there.
        """
        serving = sorted(processes, key=lambda p: p["index"])
        for old in list(serving):
            spec = ReplicaSpec(
                request.address, planned, build, old["index"], replica_token(), request.secrets, request.progress
            )
            started: list[StartedReplica] = []
            try:
                await self._start_all([spec], started)
                await self._verify(request, planned, started)
            except (ProbeFailed, ProviderError) as exc:
                await self._remove([s.name for s in started])
                raise ProviderError(
                    f"{request.address}: restarting replica {old['index']}: the new one failed, the running ones"
                    f" keep serving: {exc}"
                ) from None
            serving = sorted(
                [p for p in serving if p["name"] != old["name"]] + [started[0].record], key=lambda p: p["index"]
            )
            await self._switch(request, planned, serving, started)
            await self._remove([old["name"]])
        return serving

    async def restart(self, request: ApplyRequest) -> ApplyResult:
        """``cmlplan restart``: roll every running replica of the recorded deployment."""
        prior = request.prior or {}
        check(request.address, "deployment", prior)
        await self.runtime.prepare()
        build = await self.runtime.locate_build(request.address, prior)
        running = list(self.observed(prior, await self.live()).get("processes") or [])
        if not running:
            raise ProviderError(f"{request.address}: no replica is running to restart; run apply")
        request.progress(f"restarting {len(running)} replica(s) one at a time")
        processes = await self.roll(request, prior, build, running)
        request.progress(f"serving with {len(processes)} restarted replica(s) of build {prior.get('build')}")
        return ApplyResult(attributes={**prior, "processes": processes})

    async def undeploy(self, request: ApplyRequest) -> ApplyResult:
        prior = request.prior or {}
        generation = await asyncio.to_thread(self.routes.set_model, str(prior.get("model")), None)
        await self.link.confirm(generation)  # best effort: the model is going away either way
        live = await self.live()
        names = process_names(prior) + sorted(_orphans(live.values(), request.address, set(process_names(prior))))
        if names:
            request.progress(f"draining and stopping {len(names)} replica(s)")
            await self._remove(names)
        await self.runtime.release_if_idle()
        return ApplyResult(attributes=None)

    async def _start_all(self, specs: list[ReplicaSpec], started: list[StartedReplica]) -> None:
        if not self.runtime.parallel_start:
            for spec in specs:
                started.append(await self.runtime.start(spec))
            return
        outcomes = await asyncio.gather(*(self.runtime.start(s) for s in specs), return_exceptions=True)
        started += [o for o in outcomes if isinstance(o, StartedReplica)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _verify(self, request: ApplyRequest, planned: Attributes, started: list[StartedReplica]) -> None:
        session = await self._http()
        examples = planned.get("examples") or []
        limit = health_timeout()

        async def verify(replica: StartedReplica) -> None:
            name, replica_id = replica.name, replica.record.get("replica_id", replica.name)
            await wait_healthy(session, replica.probe, limit, lambda: self.runtime.stop_reason(name))
            request.progress(f"replica {replica_id} is healthy")
            for example in examples:
                await check_example(session, replica.probe, example, timeout=EXAMPLE_TIMEOUT)
            if examples:
                request.progress(f"replica {replica_id} answered {len(examples)} example(s)")

        outcomes = await asyncio.gather(*(verify(r) for r in started), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _switch(
        self, request: ApplyRequest, planned: Attributes, processes: list[dict[str, Any]], started: list[StartedReplica]
    ) -> None:
        """Route the model to ``processes``; if no proxy confirms, route it back and fail."""
        model = str(planned["model"])
        before = await asyncio.to_thread(snapshot_model, self.routes, model)
        generation = await asyncio.to_thread(route_model, self.routes, planned, processes)
        confirmed = await self.link.confirm(generation)
        if confirmed is None or confirmed:
            if confirmed:
                count = len(processes)
                request.progress(f"the proxy routes to {count} replica{'s' if count != 1 else ''}")
            return
        await asyncio.to_thread(restore_model, self.routes, model, before)
        await self.runtime.signal_proxies()
        await self._remove([s.name for s in started])
        url = proxy_url((await asyncio.to_thread(self.routes.read)).get("listen") or {})
        raise ProviderError(
            f"{request.address}: the proxy at {url} did not load routing generation {generation} within "
            f"{proxy_confirm_timeout():g}s; the route is put back, the new replicas are removed and the "
            "running ones keep serving"
        )

    # -- the proxy --------------------------------------------------------------------------------

    async def apply_proxy(self, request: ApplyRequest) -> ApplyResult:
        prior, planned = request.prior, request.planned
        if planned is None or request.replace:
            if prior is not None and process_names(prior):
                request.progress(f"stopping {len(process_names(prior))} proxy process(es)")
                await self._remove(process_names(prior))
            if planned is None:
                await self.runtime.release_if_idle()
                return ApplyResult(attributes=None)
        check(request.address, "proxy", planned)
        await self.runtime.prepare()
        host = self.runtime.proxy_host(planned)
        generation = await asyncio.to_thread(route_proxy, self.routes, planned, host)
        records, started = await self.runtime.ensure_proxies(
            request.address, planned, request.progress,
            env=proxy_environment(request.address, planned, request.secrets),
            restart=not request.replace and needs_proxy_restart(prior, planned),
        )  # fmt: skip
        url = proxy_url({"host": host, "port": planned["port"]})
        assert url is not None
        session = await self._http()
        for name in started:
            await wait_healthy(session, url, PROXY_START_TIMEOUT, lambda n=name: self.runtime.stop_reason(n))
        if await self.link.confirm(generation) is False:
            raise ProviderError(
                f"{request.address}: the proxy at {url} did not load routing generation {generation} "
                f"within {proxy_confirm_timeout():g}s"
            )
        live = await self.live()
        records = [{**r, **(live[r["name"]].facts if r["name"] in live else {})} for r in records]
        request.progress(f"proxy serving on {url}/model")
        return ApplyResult(attributes={**planned, "processes": records})

    # -- leftovers --------------------------------------------------------------------------------

    async def remove_leftovers(self, recorded: set[str]) -> list[str]:
        """Remove every replica and proxy no state records (a killed run's), then an idle supervisor."""
        removed = []
        for replica in await self.runtime.observe():
            if replica.name not in recorded:
                await self._remove([replica.name])
                removed.append(f"{replica.role} {replica.name} (of {replica.owner or 'no resource'}, not in state)")
        if not recorded:
            await self.runtime.release_if_idle()
        return removed

    # -- helpers ----------------------------------------------------------------------------------

    async def _remove(self, names: Iterable[str]) -> None:
        await asyncio.gather(*(self.runtime.remove(n) for n in dict.fromkeys(names)))

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.runtime.close()


def _orphans(live: Iterable[LiveReplica], owner: str, known: set[Any]) -> set[str]:
    return {r.name for r in live if r.role == "replica" and r.owner == owner and r.name not in known}
