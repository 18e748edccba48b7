"""``SupervisorRuntime``: replicas and proxies as programs of the workspace's supervisord.

Replica programs are named ``r.<project>.<model>.d<deployment id>.<token>.<index>`` (project and
model names have no dots), so the owner is read back from the name; proxies are
``cmlplan-proxy-<i>`` sharing one port.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base import Attributes, Progress, ProviderError
from ..deployments import prediction_timeout
from ..runtime import LiveReplica, ReplicaSpec, StartedReplica
from .builds import BuildOutcome, LocalBuilder
from .supervisor import ProgramState, Supervisor

PROXY_PROGRAM = "cmlplan-proxy"
REPLICA_PREFIX = "r."
REGISTRY_PREFIX = "mlflow."  # managed ModelRegistry servers (``mlflow_server.py``)
_STOPPED = ("BACKOFF", "FATAL", "EXITED")


class SupervisorRuntime:
    name = "supervisord"
    parallel_start = False  # one supervisord takes its reloadConfig calls one at a time

    def __init__(self, root: Path, builder: LocalBuilder, routes_path: Path) -> None:
        self.root = root
        self.builder = builder
        self.routes_path = routes_path
        self.supervisor = Supervisor(root / "supervisor")
        self.logs = root / "logs"
        self._ready = False

    async def prepare(self) -> None:
        if not self._ready:
            await asyncio.to_thread(self.supervisor.ensure_running)
            self._ready = True

    async def locate_build(self, address: str, planned: Attributes) -> BuildOutcome:
        model_key = str(planned["model"]).removeprefix("model.")
        build = await asyncio.to_thread(
            self.builder.existing, model_key, int(planned["build"]), str(planned.get("build_hash") or "") or None
        )
        if build is None:
            raise ProviderError(
                f"{address}: build {planned['build']} of {planned['model']} is not on disk; "
                f"run apply again to rebuild it (or pin another build)"
            )
        return build

    async def start(self, spec: ReplicaSpec) -> StartedReplica:
        planned, build = spec.planned, spec.build
        program = replica_program(planned, spec.token, spec.index)
        port = _free_port()
        threads = str(max(1, math.ceil(float(planned.get("cpu") or 1))))
        # ${env:} values go to the program's secrets file, the rest into its supervisord config
        declared = {str(k): str(v) for k, v in (planned.get("env") or {}).items()}
        secret_env = {k: spec.secrets[f"env.{k}"] for k in declared if f"env.{k}" in spec.secrets}
        env = {k: v for k, v in declared.items() if k not in secret_env}
        env.update(build.replica_env())
        env.update({"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        command = [
            str(build.python_executable), "-m", "cmlplan.serving.replica",
            "--source", str(build.src_dir), "--file", str(planned["file"]), "--function", str(planned["function"]),
            "--host", "127.0.0.1", "--port", str(port), "--replica-id", spec.replica_id,
            "--memory-bytes", str(int(planned["memory"])),
        ]
        runtime = Path(build.runtime_dir) / "cmlplan" / "serving" / "replica"
        if (runtime / "watchdog.py").is_file():
            command += ["--prediction-timeout", f"{prediction_timeout(planned):g}"]  # older builds lack it
        if (runtime / "usage.py").is_file():
            command += ["--usage-source", "psutil"]  # a host process: its own process tree
        self.logs.mkdir(parents=True, exist_ok=True)
        spec.progress(f"starting replica {spec.index + 1} ({spec.replica_id}) on port {port}")
        await asyncio.to_thread(
            functools.partial(
                self.supervisor.add_program, program, command, env, build.src_dir, self.logs / f"{program}.log",
                secret_env=secret_env,
            )
        )
        url = f"http://127.0.0.1:{port}"
        record = {"name": program, "index": spec.index, "port": port, "replica_id": spec.replica_id, "url": url}
        return StartedReplica(record=record, probe=url)

    async def observe(self) -> list[LiveReplica]:
        if not self.supervisor.is_running():
            return []
        return [_live(p) for p in await asyncio.to_thread(self.supervisor.programs)]

    async def remove(self, name: str) -> None:
        await asyncio.to_thread(self.supervisor.remove_program, name)

    def stop_reason(self, name: str) -> str | None:
        state = next((p for p in self.supervisor.programs(name) if p.name == name), None)
        if state is None or state.state not in _STOPPED:
            return None
        log = self.logs / f"{name}.log"
        return f"{_role(name)} {name} exited ({state.state}): {_last_lines(log)} (log: {log})"

    async def signal_proxies(self) -> int:
        running = [
            p for p in await self._programs() if p.name.startswith(PROXY_PROGRAM) and p.state in ("RUNNING", "STARTING")
        ]
        for program in running:
            await asyncio.to_thread(self.supervisor.signal, program.name, "HUP")
        return len(running)

    def proxy_host(self, planned: Attributes) -> str:
        return str(planned["host"])

    async def ensure_proxies(
        self, address: str, planned: Attributes, progress: Progress, *, env: Mapping[str, str], restart: bool
    ) -> tuple[list[dict[str, Any]], list[str]]:
        present = {p.name for p in await self._programs()}
        wanted = [f"{PROXY_PROGRAM}-{i}" for i in range(int(planned.get("replicas", 1)))]
        missing = [n for n in wanted if n not in present]
        command = [
            sys.executable, "-m", "cmlplan.serving.proxy", "--routes", str(self.routes_path),
            "--host", str(planned["host"]), "--port", str(planned["port"]),
        ]  # fmt: skip
        self.logs.mkdir(parents=True, exist_ok=True)
        restarted = [n for n in wanted if n not in missing] if restart else []
        for name in restarted:  # one at a time: the others keep the shared port answering
            progress(f"restarting {name}: the metrics settings changed")
            await self.remove(name)
            await asyncio.to_thread(self.supervisor.add_program, name, command, env, self.root, self.logs / f"{name}.log")
            await self._wait_running(name)
        for name in missing:
            progress(f"starting {name} on {planned['host']}:{planned['port']}")
            await asyncio.to_thread(self.supervisor.add_program, name, command, env, self.root, self.logs / f"{name}.log")
        for name in sorted(present):
            if name.startswith(PROXY_PROGRAM) and name not in wanted:
                await self.remove(name)
        return [{"name": n, "index": i} for i, n in enumerate(wanted)], restarted + missing

    async def _wait_running(self, name: str, timeout: float = 30.0) -> None:
        """Until supervisord counts ``name`` as started (up for its startsecs); ProviderError if it stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = next((p for p in await asyncio.to_thread(self.supervisor.programs, name) if p.name == name), None)
            if state is not None and state.state == "RUNNING":
                return
            reason = self.stop_reason(name)
            if reason is not None:
                raise ProviderError(reason)
            await asyncio.sleep(0.2)
        raise ProviderError(f"{name} did not start within {timeout:g}s (log: {self.logs / (name + '.log')})")

    async def release_if_idle(self) -> None:
        if self.supervisor.is_running() and not await self._programs():
            await asyncio.to_thread(self.supervisor.shutdown)
            self._ready = False

    async def close(self) -> None:
        return None

    async def _programs(self) -> list[ProgramState]:
        return await asyncio.to_thread(self.supervisor.programs) if self.supervisor.is_running() else []


def replica_program(planned: Attributes, token: str, index: int) -> str:
    return f"{REPLICA_PREFIX}{planned['project']}.{planned['name']}.d{planned['deployment_id']}.{token}.{index}"


def _owner(name: str) -> str:
    """The deployment address a replica program belongs to (``r.<project>.<model>.…``)."""
    parts = name.split(".")
    if name.startswith(REPLICA_PREFIX) and len(parts) >= 4:
        return f"deployment.{parts[1]}/{parts[2]}"
    if name.startswith(REGISTRY_PREFIX):
        return f"registry.{name.removeprefix(REGISTRY_PREFIX)}"
    return ""


def _role(name: str) -> str:
    if name.startswith(REGISTRY_PREFIX):
        return "registry"
    return "proxy" if name.startswith(PROXY_PROGRAM) else "replica"


def _live(program: ProgramState) -> LiveReplica:
    # a program supervisord still lists counts as running: it restarts crashed ones itself
    return LiveReplica(
        name=program.name, owner=_owner(program.name), role=_role(program.name), running=True,
        facts={"pid": program.pid},
    )


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
