"""The local provider: builds as venvs + read-only snapshots, replicas and the proxy as processes
under one supervisord per workspace.

Rollouts never leave a gap: new replicas start, pass /healthz and every example, the proxy's
route switches to them (and the rollout waits for the proxy to load it), then the old replicas
drain (SIGTERM lets an in-flight prediction finish) and stop. If the new ones fail, the old ones
keep serving and the apply reports why.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

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
from ..probes import ProbeFailed, check_example, wait_generation, wait_healthy
from ..routing import RoutingTable
from ..source import FileEntry
from .builds import BuildFailed, BuildOutcome, BuildRequest, LocalBuilder
from .supervisor import ProgramState, Supervisor

PROXY_PROGRAM = "cmlplan-proxy"


class LocalProvider:
    name = "local"
    kinds = frozenset({"build", "deployment", "proxy", "registry"})

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.root = Path(context.data_dir)
        self.spec_dir = Path(context.spec_dir)
        self.supervisor = Supervisor(self.root / "supervisor")
        self.builder = LocalBuilder(self.root)
        self.routes = RoutingTable(self.root / "run" / "routes.json", context.salt)
        self.logs = self.root / "logs"
        self._session: aiohttp.ClientSession | None = None
        self._supervisor_ready = False

    # -- the four verbs -------------------------------------------------------------------------

    async def read(self, request: ReadRequest) -> ReadResult:
        running = self.supervisor.is_running()
        programs = await asyncio.to_thread(self.supervisor.programs) if running else []
        by_name = {p.name: p for p in programs}
        live: dict[str, Attributes | None] = {}
        for ref in request.resources:
            attributes = dict(ref.attributes)
            if ref.kind == "build":
                model_key = str(attributes.get("model", "")).removeprefix("model.")
                exists = self.builder.existing(model_key, int(attributes.get("number", 0))) is not None
                live[ref.address] = attributes if exists else None
            elif ref.kind == "deployment":
                live[ref.address] = _with_orphans(_live_processes(attributes, by_name), by_name)
            elif ref.kind == "proxy":
                observed = _live_processes(attributes, by_name)
                live[ref.address] = observed if observed.get("processes") else None
        return ReadResult(live=live)

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.kind == "registry":
            raise UnsupportedError(f"{request.address}: ModelRegistry is not supported yet by provider 'local'")
        if request.desired is None:
            return PlanResult(planned=None)
        current = request.current or {}
        planned = dict(request.desired)
        if request.kind == "build":
            planned["path"] = current.get("path", UNKNOWN)
            return PlanResult(planned=planned, requires_replace=("hash",))
        if request.kind == "deployment":
            planned["processes"] = current.get("processes", UNKNOWN) if request.current else UNKNOWN
            if request.current and not replicas_complete(current, planned):
                planned["processes"] = UNKNOWN  # replicas vanished outside cmlplan: apply starts them again
            return PlanResult(
                planned=planned, requires_replace=DEPLOYMENT_REPLACE_PATHS, create_before_destroy=True
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
        raise UnsupportedError(f"{request.address}: kind {request.kind!r} is not supported by provider 'local'")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- optional: garbage ----------------------------------------------------------------------

    async def collect_garbage(self, keep: set[str]) -> list[str]:
        """Remove build folders whose address is not in ``keep``, then venvs no build uses."""
        removed: list[str] = []
        for build_dir in sorted(self.builder.builds_dir.glob("*/*/*")):
            if not build_dir.is_dir() or not build_dir.name.isdigit():
                continue
            model_key = f"{build_dir.parent.parent.name}/{build_dir.parent.name}"
            address = f"build.{model_key}#{int(build_dir.name)}"
            if address in keep:
                continue
            await asyncio.to_thread(self.builder.remove_build, model_key, int(build_dir.name))
            removed.append(f"build folder {build_dir} ({address})")
        venvs = await asyncio.to_thread(self.builder.remove_unused_venvs, set())
        removed += [f"venv {self.builder.venvs_dir / key}" for key in venvs]
        return removed

    # -- builds -----------------------------------------------------------------------------------

    async def _apply_build(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            prior = request.prior or {}
            model_key = str(prior.get("model", "")).removeprefix("model.")
            await asyncio.to_thread(self.builder.remove_build, model_key, int(prior.get("number", 0)))
            return ApplyResult(attributes=None)
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
        build_request = BuildRequest(
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
            outcome = await asyncio.to_thread(self.builder.build, build_request)
        except BuildFailed as exc:
            tail = "\n".join(f"  | {line}" for line in exc.log_tail[-15:])
            raise ProviderError(f"{request.address}: {exc}\n{tail}" if tail else f"{request.address}: {exc}") from None
        return ApplyResult(attributes={**planned, "path": str(outcome.build_dir)})

    # -- deployments ----------------------------------------------------------------------------

    async def _apply_deployment(self, request: ApplyRequest) -> ApplyResult:
        prior = request.prior
        planned = request.planned
        if planned is None:
            assert prior is not None
            self.routes.set_model(_model_address(prior), None)
            await self._reload_proxy()
            await self._remove_programs(process_names(prior), request)
            await self._shutdown_if_idle()
            return ApplyResult(attributes=None)
        await self._ensure_supervisor()
        model_key = str(planned["model"]).removeprefix("model.")
        build = self.builder.existing(model_key, int(planned["build"]))
        if build is None:
            raise ProviderError(
                f"{request.address}: build {planned['build']} of {planned['model']} is not on disk; "
                f"run apply again to rebuild it (or pin another build)"
            )
        fresh = prior is None or request.replace
        keep: list[dict[str, Any]] = []
        if not fresh:
            present = {p.name for p in await asyncio.to_thread(self.supervisor.programs)}
            keep = [
                p for p in (prior or {}).get("processes") or [] if p.get("name") in present and not p.get("orphan")
            ]
        wanted = 0 if planned.get("stopped") else int(planned["replicas"])
        keep.sort(key=lambda p: p["index"])
        surplus, keep = keep[wanted:], keep[:wanted]
        used = {p["index"] for p in keep}
        indexes = [i for i in range(wanted * 2 + len(used)) if i not in used][: wanted - len(keep)]
        started: list[dict[str, Any]] = []
        try:
            for index in indexes:
                started.append(await self._start_replica(request, planned, build, index))
            await self._verify(request, planned, started)
        except (ProbeFailed, ProviderError) as exc:
            await self._remove_programs([p["name"] for p in started], request, quiet=True)
            raise ProviderError(
                f"{request.address}: new replicas failed, the running ones keep serving: {exc}"
            ) from None
        processes = sorted(keep + started, key=lambda p: p["index"])
        await self._route(request, planned, processes)
        old = [p["name"] for p in surplus]
        if fresh and prior is not None:
            old += process_names(prior)
        await self._remove_programs(old, request)
        await self._remove_orphans(request, planned, processes)
        processes = await self._with_pids(processes)
        request.progress(f"serving with {len(processes)} replica(s) of build {planned['build']}")
        return ApplyResult(attributes={**planned, "processes": processes})

    async def _remove_orphans(
        self, request: ApplyRequest, planned: Attributes, processes: list[dict[str, Any]]
    ) -> None:
        """Remove this model's replicas that no state records: started by an apply that was killed
        before it could save them. The model now serves from ``processes`` only."""
        serving = {p["name"] for p in processes}
        prefix = _replica_prefix(planned)
        orphans = [p.name for p in await asyncio.to_thread(self.supervisor.programs, prefix) if p.name not in serving]
        if orphans:
            request.progress(f"removing {len(orphans)} replica(s) no state recorded: {', '.join(orphans)}")
            await self._remove_programs(orphans, request, quiet=True)

    async def _start_replica(
        self, request: ApplyRequest, planned: Attributes, build: BuildOutcome, index: int
    ) -> dict[str, Any]:
        project, name, deployment_id = planned["project"], planned["name"], planned["deployment_id"]
        program = f"{_replica_prefix(planned)}d{deployment_id}.{index}"
        replica_id = f"{name}-{deployment_id}-{index}-{project}"
        port = _free_port()
        threads = str(max(1, math.ceil(float(planned.get("cpu") or 1))))
        env = {
            str(k): request.secrets.get(f"env.{k}", str(v)) for k, v in (planned.get("env") or {}).items()
        }
        env.update(build.replica_env())
        env.update({"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        command = [
            str(build.python_executable), "-m", "cmlplan.serving.replica",
            "--source", str(build.src_dir), "--file", str(planned["file"]), "--function", str(planned["function"]),
            "--host", "127.0.0.1", "--port", str(port), "--replica-id", replica_id,
            "--memory-bytes", str(int(planned["memory"])),
        ]
        if _runtime_has_watchdog(build):  # builds made by an older cmlplan carry a runtime without it
            command += ["--prediction-timeout", f"{prediction_timeout(planned):g}"]
        self.logs.mkdir(parents=True, exist_ok=True)
        request.progress(f"starting replica {index + 1} ({replica_id}) on port {port}")
        await asyncio.to_thread(
            self.supervisor.add_program, program, command, env, build.src_dir, self.logs / f"{program}.log",
        )
        return {"name": program, "index": index, "port": port, "replica_id": replica_id, "url": f"http://127.0.0.1:{port}"}

    async def _verify(self, request: ApplyRequest, planned: Attributes, started: list[dict[str, Any]]) -> None:
        session = await self._http()
        examples = planned.get("examples") or []
        for process in started:
            await wait_healthy(session, process["url"], HEALTH_TIMEOUT, self._crash_reason(process["name"]))
            request.progress(f"replica {process['replica_id']} is healthy")
            for example in examples:
                await check_example(session, process["url"], example, timeout=60.0)
            if examples:
                request.progress(f"replica {process['replica_id']} answered {len(examples)} example(s)")

    def _crash_reason(self, program: str) -> Any:
        log = self.logs / f"{program}.log"

        def reason() -> str | None:
            state = next((p for p in self.supervisor.programs(program) if p.name == program), None)
            if state is None or state.state not in ("BACKOFF", "FATAL", "EXITED"):
                return None
            return f"replica {program} exited ({state.state}): {_last_lines(log)} (log: {log})"

        return reason

    async def _route(self, request: ApplyRequest, planned: Attributes, processes: list[dict[str, Any]]) -> None:
        generation = route_model(self.routes, planned, processes)
        if await self._reload_proxy(generation):
            request.progress(f"the proxy routes to {len(processes)} replica{'s' if len(processes) != 1 else ''}")

    async def _reload_proxy(self, generation: int | None = None) -> bool:
        """Tell running proxies to reload routes and wait until one serves ``generation``.

        A proxy that does not confirm in time is an apply error, never a silent success: the
        next apply tries again. Returns False when no proxy is running (it reads the file at start).
        """
        programs = [p for p in self._programs_now() if p.name.startswith(PROXY_PROGRAM)]
        running = [p for p in programs if p.state in ("RUNNING", "STARTING")]
        if not running:
            return False
        url = proxy_url(self.routes.read().get("listen") or {})
        for _ in range(3):
            for program in running:
                await asyncio.to_thread(self.supervisor.signal, program.name, "HUP")
            if generation is None or url is None:
                return True
            if await wait_generation(await self._http(), url, generation, timeout=10.0):
                return True
        raise ProviderError(f"the proxy at {url} did not load routing generation {generation} within 30s")

    async def _remove_programs(self, names: list[str], request: ApplyRequest, quiet: bool = False) -> None:
        if not names:
            return
        if not quiet:
            request.progress(f"draining and stopping {len(names)} old process(es)")
        await asyncio.gather(*(asyncio.to_thread(self.supervisor.remove_program, n) for n in names))

    async def _with_pids(self, processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_name = {p.name: p for p in await asyncio.to_thread(self.supervisor.programs)}
        return [{**p, "pid": (by_name[p["name"]].pid if p["name"] in by_name else None)} for p in processes]

    # -- the proxy --------------------------------------------------------------------------------

    async def _apply_proxy(self, request: ApplyRequest) -> ApplyResult:
        prior, planned = request.prior, request.planned
        if planned is None or request.replace:
            if prior is not None:
                await self._remove_programs(process_names(prior), request)
            if planned is None:
                await self._shutdown_if_idle()
                return ApplyResult(attributes=None)
        await self._ensure_supervisor()

        generation = route_proxy(self.routes, planned, planned["host"])
        present = {p.name for p in self._programs_now()}
        wanted = [f"{PROXY_PROGRAM}-{i}" for i in range(int(planned.get("replicas", 1)))]
        missing = [n for n in wanted if n not in present]
        extra = [p.name for p in self._programs_now() if p.name.startswith(PROXY_PROGRAM) and p.name not in wanted]
        for name in missing:
            request.progress(f"starting {name} on {planned['host']}:{planned['port']}")
            command = [
                sys.executable, "-m", "cmlplan.serving.proxy", "--routes", str(self.routes.path),
                "--host", str(planned["host"]), "--port", str(planned["port"]),
            ]
            self.logs.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(
                self.supervisor.add_program, name, command, {}, self.root, self.logs / f"{name}.log"
            )
        await self._remove_programs(extra, request, quiet=True)
        url = proxy_url({"host": planned["host"], "port": planned["port"]})
        session = await self._http()
        for name in missing:
            await wait_healthy(session, url, 30.0, self._crash_reason(name))
        await self._reload_proxy(generation)
        processes = await self._with_pids([{"name": n, "index": i} for i, n in enumerate(wanted)])
        request.progress(f"proxy serving on {url}/model")
        return ApplyResult(attributes={**planned, "processes": processes})

    # -- helpers ----------------------------------------------------------------------------------

    async def _ensure_supervisor(self) -> None:
        if not self._supervisor_ready:
            await asyncio.to_thread(self.supervisor.ensure_running)
            self._supervisor_ready = True

    def _programs_now(self) -> list[ProgramState]:
        return self.supervisor.programs() if self.supervisor.is_running() else []

    async def _shutdown_if_idle(self) -> None:
        if self.supervisor.is_running() and not self._programs_now():
            await asyncio.to_thread(self.supervisor.shutdown)
            self._supervisor_ready = False

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _live_processes(attributes: Attributes, programs: dict[str, ProgramState]) -> Attributes:
    """The recorded attributes with ``processes`` as supervisord sees them now."""
    recorded = attributes.get("processes")
    if not isinstance(recorded, list):
        return attributes
    observed = []
    for process in recorded:
        state = programs.get(process.get("name"))
        if state is None:
            continue
        observed.append({**process, "pid": state.pid})
    return {**attributes, "processes": observed}


def _replica_prefix(attributes: Attributes) -> str:
    """Every replica program of a model starts with this (project and model names have no dots)."""
    return f"r.{attributes.get('project')}.{attributes.get('name')}."


def _with_orphans(attributes: Attributes, programs: dict[str, ProgramState]) -> Attributes:
    """Add the model's replicas that run but are not recorded (an apply killed before saving them)
    as ``{"name": ..., "orphan": true}``: drift, so apply removes them."""
    recorded = attributes.get("processes")
    if not isinstance(recorded, list) or not attributes.get("project") or not attributes.get("name"):
        return attributes
    known = {p.get("name") for p in recorded}
    prefix = _replica_prefix(attributes)
    orphans = [{"name": n, "orphan": True} for n in sorted(programs) if n.startswith(prefix) and n not in known]
    return {**attributes, "processes": recorded + orphans} if orphans else attributes


def _runtime_has_watchdog(build: BuildOutcome) -> bool:
    return (Path(build.runtime_dir) / "cmlplan" / "serving" / "replica" / "watchdog.py").is_file()




def _model_address(attributes: Attributes) -> str:
    return str(attributes.get("model"))



def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _last_lines(path: Path, count: int = 3) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return " | ".join(lines[-count:]) or "empty log"
