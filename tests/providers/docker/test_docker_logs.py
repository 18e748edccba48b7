"""`cmlplan logs` on docker: a labelled container's stdout and stderr, read whole and followed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cmlplan.providers.base import LogRequest
from cmlplan.providers.docker import containers as ct
from cmlplan.providers.docker.logs import read_logs, select

pytestmark = pytest.mark.docker

ADDRESS = "deployment.numbers/add"
PROGRAM = "import sys, time; print('one', flush=True); print('two', file=sys.stderr, flush=True); time.sleep(1); print('three')"


def test_container_logs_read_whole_and_followed(docker_engine: str) -> None:
    client = ct.connect()
    workspace = f"logs-{uuid.uuid4().hex[:8]}"
    name = f"cmlplan-{workspace}-numbers-add-d1-abcd-0"
    labels = {ct.LABEL_WORKSPACE: workspace, ct.LABEL_ADDRESS: ADDRESS, ct.LABEL_ROLE: "replica"}
    container = client.containers.create(docker_engine, ["python3", "-c", PROGRAM], name=name, labels=labels)
    try:
        container.start()
        states = ct.list_workspace(client, workspace, "none", "00")
        assert [s.name for s in select(states, LogRequest(address=ADDRESS, attributes={}))] == [name]
        assert select(states, LogRequest(address=ADDRESS, attributes={}, replica=1)) == []
        assert select(states, LogRequest(address="proxy.default", attributes={})) == []

        async def lines(follow: bool) -> list[tuple[str, str]]:
            request = LogRequest(address=ADDRESS, attributes={}, follow=follow)
            return [(line.source, line.text) async for line in read_logs(client, states, request)]

        followed = asyncio.run(asyncio.wait_for(lines(True), 60))  # ends when the container exits
        texts = [t for _, t in followed]  # stdout and stderr interleave in the engine's own order
        assert sorted(texts[:2]) == ["one", "two"] and texts[2] == "three"
        assert followed[0][0] == f"replica 0 ({name})"
        assert sorted(t for _, t in asyncio.run(lines(False))) == ["one", "three", "two"]
    finally:
        container.remove(force=True)
        client.close()
