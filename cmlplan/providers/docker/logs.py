"""The docker provider's logs: each replica or proxy container's output, read through the engine.

A container's log goes with the container, so a replica a rollout replaced has no log left here
(unlike supervisord's files on the local provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import docker
import docker.errors

from ..base import LogLine, LogRequest
from . import containers as ct


def _label(state: ct.ContainerState) -> str:
    if state.labels.get(ct.LABEL_ROLE) == "proxy":
        return f"proxy ({state.name})"
    return f"replica {state.name.rsplit('-', 1)[-1]} ({state.name})"


def select(states: list[ct.ContainerState], request: LogRequest) -> list[ct.ContainerState]:
    """The containers ``request`` is about: the proxy's, or the deployment's (one replica index)."""
    if request.address.startswith("proxy."):
        return [s for s in states if s.labels.get(ct.LABEL_ROLE) == "proxy"]
    found = [
        s for s in states
        if s.labels.get(ct.LABEL_ROLE, "replica") == "replica" and s.labels.get(ct.LABEL_ADDRESS) == request.address
    ]
    if request.replica is not None:
        found = [s for s in found if s.name.rsplit("-", 1)[-1] == str(request.replica)]
    return sorted(found, key=lambda s: s.name)


async def read_logs(client: docker.DockerClient, states: list[ct.ContainerState], request: LogRequest) -> AsyncIterator[LogLine]:
    """Each container's lines (stdout and stderr); with ``follow``, lines as they come, until cancelled."""
    since = int(request.since) if request.since is not None else None
    if not request.follow:
        for state in states:
            text = await asyncio.to_thread(_logs, client, state.name, since)
            for line in text.splitlines():
                yield LogLine(source=_label(state), text=line)
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
    stop = threading.Event()

    def pump(state: ct.ContainerState) -> None:
        buffer = b""
        try:
            stream: Any = client.containers.get(state.name).logs(stream=True, follow=True, since=since)
            for chunk in stream:
                if stop.is_set():
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    line = LogLine(source=_label(state), text=raw.decode("utf-8", "replace"))
                    loop.call_soon_threadsafe(queue.put_nowait, line)
        except docker.errors.DockerException:
            pass
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threads = [threading.Thread(target=pump, args=(s,), daemon=True) for s in states]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
                continue
            yield item
    finally:
        stop.set()


def _logs(client: docker.DockerClient, name: str, since: int | None) -> str:
    with contextlib.suppress(docker.errors.DockerException):
        data: bytes = client.containers.get(name).logs(since=since) if since is not None else client.containers.get(name).logs()
        return data.decode("utf-8", "replace")
    return ""
