"""The docker provider without an engine: plan, drift rules, Dockerfile layers, python check, gc ability."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cmlplan.providers.base import GarbageCollecting, PlanRequest, ProviderContext, UnsupportedError
from cmlplan.providers.docker.containers import ContainerState
from cmlplan.providers.docker.provider import DockerProvider
from cmlplan.providers.docker.runtime import _live
from cmlplan.providers.fake import FakeProvider
from cmlplan.providers.images import BuildError, ImageBuilder, _check_python, image_tag
from cmlplan.providers.local.provider import LocalProvider
from cmlplan.providers.registry import create_provider
from cmlplan.providers.rollout import Rollout
from cmlplan.specs.workspace import DockerSettings, WorkspaceSpec
from cmlplan.values import UNKNOWN


def _context(tmp_path: Path) -> ProviderContext:
    return ProviderContext(
        workspace_id="unit", spec_dir=str(tmp_path), data_dir=str(tmp_path / ".cmlplan"), salt="00",
        settings=WorkspaceSpec(provider="docker", docker=DockerSettings(base_image="base:1", publish_host="127.0.0.1")),
    )


def _state(name: str, *, running: bool = True, image: str = "sha256:a", env: str = "e1") -> ContainerState:
    return ContainerState(
        name=name, id=f"{name}-id-0123456789", status="running" if running else "exited", running=running,
        image_id=image, env_hash=env, labels={}, ip="172.18.0.2", restarts=0, oom_killed=False, exit_code=0,
    )


def test_the_registry_makes_a_docker_provider_without_touching_the_engine(tmp_path: Path) -> None:
    provider = create_provider("docker", _context(tmp_path))
    assert isinstance(provider, DockerProvider)
    assert provider.network == "cmlplan-unit" and provider.base_image == "base:1"
    asyncio.run(provider.close())


def test_gc_is_an_optional_ability(tmp_path: Path) -> None:
    assert isinstance(DockerProvider(_context(tmp_path)), GarbageCollecting)
    assert isinstance(LocalProvider(_context(tmp_path)), GarbageCollecting)
    assert not isinstance(FakeProvider(_context(tmp_path)), GarbageCollecting)


def test_plan_matches_the_local_provider(tmp_path: Path) -> None:
    provider = DockerProvider(_context(tmp_path))
    desired = {"replicas": 2, "stopped": False, "build": 1}
    one = {**desired, "processes": [{"name": "a", "index": 0}]}
    result = asyncio.run(provider.plan(PlanRequest(address="deployment.p/m", kind="deployment", current=one, desired=desired)))
    assert result.planned["processes"] == UNKNOWN  # a replica vanished: apply starts it again
    assert result.create_before_destroy and "memory" in result.requires_replace
    build = asyncio.run(provider.plan(PlanRequest(address="build.p/m#1", kind="build", current=None, desired={"hash": "h"})))
    assert build.planned["image"] == UNKNOWN and build.requires_replace == ("hash",)
    with pytest.raises(UnsupportedError, match="replicas: 1"):
        asyncio.run(provider.plan(PlanRequest(address="proxy.default", kind="proxy", current=None, desired={"replicas": 2})))


def test_gone_stopped_or_changed_containers_leave_the_live_processes() -> None:
    recorded = {
        "processes": [
            {"name": n, "index": i, "image_id": "sha256:a", "env_hash": "e1", "container_id": "x"}
            for i, n in enumerate(["ok", "gone", "stopped", "other-image", "other-env"])
        ]
    }
    states = [
        _state("ok"), _state("stopped", running=False), _state("other-image", image="sha256:b"),
        _state("other-env", env="e2"),
    ]
    live = Rollout.observed(recorded, {s.name: _live(s) for s in states})
    assert [p["name"] for p in live["processes"]] == ["ok"]
    assert live["processes"][0]["container_id"] == "ok-id-012345"


def test_dockerfile_layers_go_from_least_to_most_changed(tmp_path: Path) -> None:
    text = ImageBuilder(None, tmp_path, "base:1")._dockerfile("build.sh", {"cmlplan.kind": "build"})
    lines = text.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(prefix))
        for prefix in ("FROM base:1", "RUN python3 -m venv", "COPY wheels", "RUN /opt/venv/bin/pip install",
                       "COPY runtime", "COPY src /app", 'RUN bash "build.sh"', "USER 65534", "LABEL")
    ]
    assert order == sorted(order), text
    assert "--no-index" in text


def test_only_python_311_builds(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"runtime python 3\.12 is not available on the docker provider"):
        _check_python("3.12")
    assert image_tag("ws", "iris/petal-width", 3) == "cmlplan/ws-iris-petal-width:3"


def test_the_environment_hash_leaves_secret_values_out() -> None:
    import hashlib
    import json

    from cmlplan.providers.docker.containers import LABEL_SECRET_ENV, env_hash, state_of

    names = frozenset({"DB_PASSWORD"})
    base = ["PATH=/usr/bin", "MODE=fast"]
    one = env_hash("00", [*base, "DB_PASSWORD=hunter2"], names)
    assert one.startswith("m:") and len(one) == 26
    assert env_hash("00", [*base, "DB_PASSWORD=hunter3"], names) == one  # the keyed fingerprint sees that change
    assert env_hash("00", ["PATH=/usr/bin", "MODE=slow", "DB_PASSWORD=hunter2"], names) != one
    legacy = hashlib.sha256(("00" + json.dumps(sorted([*base, "DB_PASSWORD=hunter2"]))).encode()).hexdigest()[:24]
    assert env_hash("00", [*base, "DB_PASSWORD=hunter2"], None) == legacy  # an unlabelled (older) container

    class Container:
        name, id = "c", "c-id-0123456789"
        attrs = {
            "State": {"Status": "running", "Running": True}, "Image": "sha256:a",
            "Config": {"Env": [*base, "DB_PASSWORD=hunter2"], "Labels": {LABEL_SECRET_ENV: "DB_PASSWORD"}},
        }

    assert state_of(Container(), "net", "00").env_hash == one
