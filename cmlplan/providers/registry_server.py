"""Waiting for a managed mlflow server to answer, the same on every provider that runs one."""

from __future__ import annotations

import asyncio
import time

from ..registry.client import health_problem
from ..registry.server import start_timeout
from .base import ProviderError
from .runtime import ReplicaRuntime


async def wait_until_serving(runtime: ReplicaRuntime, name: str, uri: str, address: str, logs_hint: str) -> None:
    """Return once ``uri`` answers; fail in one line when the server stopped or the start timeout passed.

    ``logs_hint`` ends the timeout message: where the server's log is (a file, ``docker logs NAME``).
    """
    limit = start_timeout()
    deadline = time.monotonic() + limit
    while True:
        problem = await asyncio.to_thread(health_problem, uri, 2.0)
        if problem is None:
            return
        reason = await asyncio.to_thread(runtime.stop_reason, name)
        if reason is not None:
            raise ProviderError(f"{address}: mlflow server did not start: {reason}")
        if time.monotonic() > deadline:
            raise ProviderError(
                f"{address}: mlflow server at {uri} did not answer within {limit:g}s ({problem}); see {logs_hint}"
            )
        await asyncio.sleep(0.5)
