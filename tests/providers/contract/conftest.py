"""The conformance suite's subject: one workspace per provider (fake, local, docker, kubernetes) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from subjects import (
    DockerSubject,
    FakeSubject,
    KubernetesSubject,
    LocalSubject,
    Subject,
    copy_example,
    docker_ready,
)

from cmlplan.providers import registry
from cmlplan.providers.fake import FakeProvider

PROVIDERS = ["fake", "local", "docker", "kubernetes"]


@pytest.fixture(scope="module", params=PROVIDERS)
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    name = request.param
    folder = copy_example(tmp_path_factory.mktemp(f"contract-{name}") / "add-numbers")
    mp = pytest.MonkeyPatch()
    # failures must show in seconds, not minutes: the rollout's timeouts come from the environment
    mp.setenv("CMLPLAN_PROXY_CONFIRM_TIMEOUT", "6")
    mp.setenv("CMLPLAN_HEALTH_TIMEOUT", "60")
    made: Subject
    if name == "fake":
        fake = FakeProvider()
        previous = registry._FACTORIES.get("local")
        registry.register_provider("local", lambda _context: fake)
        made = FakeSubject(folder, fake)
    elif name == "local":
        made = LocalSubject(folder)
    elif name == "kubernetes":
        made = KubernetesSubject(folder)  # the fake API on loopback: no cluster needed
    else:
        why = docker_ready()
        if why:
            mp.undo()
            pytest.skip(f"docker conformance needs an engine: {why}")
        made = DockerSubject(folder)
    try:
        yield made
    finally:
        try:
            made.teardown()
        finally:
            if name == "fake":
                if previous is None:
                    registry._FACTORIES.pop("local", None)
                else:
                    registry._FACTORIES["local"] = previous
            mp.undo()
