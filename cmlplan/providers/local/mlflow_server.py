"""Managed ModelRegistry resources on the local provider: ``mlflow server`` as a program
(``mlflow.<name>``) of the workspace's supervisord, which restarts it when it crashes and keeps it
running after cmlplan exits.

Destroying the registry stops the program and keeps its data (the SQLite file and the artifact
folder): registered models are worth more than the server.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from ...registry.server import server_command, server_uri
from ...values import UNKNOWN
from ..base import ApplyRequest, ApplyResult, Attributes, PlanRequest, PlanResult
from ..registry_server import wait_until_serving
from .runtime import REGISTRY_PREFIX, SupervisorRuntime


def program_name(attributes: Attributes) -> str:
    return f"{REGISTRY_PREFIX}{attributes['name']}"


class MlflowServers:
    """Runs, reads and stops the workspace's managed registries through ``runtime``'s supervisord."""

    def __init__(self, runtime: SupervisorRuntime, spec_dir: Path) -> None:
        self.runtime = runtime
        self.spec_dir = spec_dir

    async def read(self, attributes: Attributes) -> Attributes | None:
        """The recorded registry with its process as supervisord sees it; None when not running."""
        supervisor = self.runtime.supervisor
        if not await asyncio.to_thread(supervisor.is_running):
            return None
        name = program_name(attributes)
        found = [p for p in await asyncio.to_thread(supervisor.programs, name) if p.name == name]
        if not found or found[0].state not in ("RUNNING", "STARTING", "BACKOFF"):
            return None
        return {**attributes, "processes": [{"name": name, "pid": found[0].pid}]}

    @staticmethod
    def plan(request: PlanRequest) -> PlanResult:
        if request.desired is None:
            return PlanResult(planned=None)
        planned = dict(request.desired)
        planned["uri"] = server_uri(planned)
        planned["processes"] = (request.current or {}).get("processes", UNKNOWN) if request.current else UNKNOWN
        return PlanResult(planned=planned, computed=("processes",))

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return await self._stop(request)
        planned = request.planned
        name = program_name(planned)
        argv, env = server_command(planned, self.spec_dir, request.secrets)
        await self.runtime.prepare()
        logs = self.runtime.logs
        logs.mkdir(parents=True, exist_ok=True)
        uri = server_uri(planned)
        request.progress(f"starting mlflow server {name} on {uri}")
        # with a DSN password or S3 keys, the whole environment goes to the secrets file, not the config
        plain, secret = ({}, env) if request.secrets else (env, {})
        await asyncio.to_thread(
            functools.partial(
                self.runtime.supervisor.add_program, name, argv, plain, self.spec_dir, logs / f"{name}.log",
                startsecs=3, secret_env=secret,
            )
        )
        await self._wait(name, uri, request)
        request.progress(f"registry serving on {uri}")
        live = await self.read(planned)
        processes = (live or {}).get("processes") or [{"name": name}]
        return ApplyResult(attributes={**planned, "uri": uri, "processes": processes})

    async def _wait(self, name: str, uri: str, request: ApplyRequest) -> None:
        await wait_until_serving(self.runtime, name, uri, request.address, str(self.runtime.logs / (name + '.log')))

    async def _stop(self, request: ApplyRequest) -> ApplyResult:
        prior = request.prior or {}
        name = program_name(prior)
        request.progress(f"stopping mlflow server {name}; its data stays where it was")
        await self.runtime.remove(name)
        await self.runtime.release_if_idle()
        return ApplyResult(attributes=None)
