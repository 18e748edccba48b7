"""The docker provider's logs: each replica or proxy container's output, read through the engine.

A container's log goes with the container, so before a rollout or a restart removes one, its log is
kept under ``.cmlplan/logs/docker/<project>/<model>/<container>.log`` (the proxy's under ``proxy/``):
``cmlplan logs`` shows those first, oldest first, then the live containers', as on the local provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ..base import LogLine, LogRequest
from . import containers as ct


def _label(state: ct.ContainerState) -> str:
    return _label_of(state.name, state.labels.get(ct.LABEL_ROLE) == "proxy")


def _label_of(name: str, proxy: bool) -> str:
    return f"proxy ({name})" if proxy else f"replica {name.rsplit('-', 1)[-1]} ({name})"


def _kept_folder(logs: Path, address: str, proxy: bool) -> Path:
    if proxy:
        return logs / "docker" / "proxy"
    project, model = address.split(".", 1)[1].split("/", 1)
    return logs / "docker" / project / model


def keep_log(logs: Path, container: Any) -> None:
    """Write a stopped container's whole log to the host before it is removed (0600: a model may print anything)."""
    labels = container.labels or {}
    address = labels.get(ct.LABEL_ADDRESS, "")
    proxy = labels.get(ct.LABEL_ROLE) == "proxy"
    if not proxy and not address.startswith("deployment."):
        return
    folder = _kept_folder(logs, address, proxy)
    folder.mkdir(parents=True, exist_ok=True)
    data: bytes = container.logs()
    descriptor = os.open(folder / f"{container.name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def kept_lines(logs: Path, request: LogRequest) -> list[LogLine]:
    """The kept logs of removed containers for ``request``, oldest file first."""
    proxy = request.address.startswith("proxy.")
    folder = _kept_folder(logs, request.address, proxy)
    files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    found = []
    for path in files:
        if request.replica is not None and path.stem.rsplit("-", 1)[-1] != str(request.replica):
            continue
        if request.since is not None and path.stat().st_mtime < request.since:
            continue
        label = _label_of(path.stem, proxy)
        found += [LogLine(source=label, text=line) for line in path.read_text(errors="replace").splitlines()]
    return found


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
