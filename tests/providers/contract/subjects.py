"""One interface over the fake, local and docker providers for the conformance suite.

A ``Subject`` is a private copy of examples/add-numbers (2 replicas, example input {a: 3, b: 5} ->
8) applied by one provider. The real providers run the CLI as a subprocess and call the model
through their proxy; the fake runs the same CLI in-process against the FakeProvider, and its
"call" reads the fake world (it has no proxy). Fault helpers freeze the proxy (SIGSTOP the proxy
process, ``docker pause`` the proxy container) so it never confirms a new routing generation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
EXAMPLES = TESTS.parent / "examples"
MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Subject:
    provider = ""
    new_build_replaces = True  # a new build is a new deployment (id, replica names); kubernetes rolls in place

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    # -- what every provider does the same way --------------------------------------------------

    def cli(self, *args: str) -> tuple[int, str]:
        raise NotImplementedError

    def apply(self) -> tuple[int, str]:
        return self.cli("apply", "-auto-approve")

    def must_apply(self) -> str:
        code, output = self.apply()
        assert code == 0, output
        return output

    def plan(self) -> dict[str, Any]:
        code, output = self.cli("plan", "--json")
        assert code == 0, output
        return json.loads(output)

    def actions(self) -> dict[str, str]:
        return {c["address"]: c["action"] for c in self.plan()["resource_changes"] if c["action"] != "no-op"}

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / ".cmlplan" / "state.json").read_text())

    def attributes(self, address: str) -> dict[str, Any]:
        return self.state()["resources"][address]["attributes"]

    def recorded_replicas(self) -> set[str]:
        return {p["name"] for p in self.attributes(DEPLOYMENT).get("processes") or []}

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.dir / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    def write_model(self, body: str) -> None:
        (self.dir / "add.py").write_text(body)

    # -- what differs ----------------------------------------------------------------------------

    def call(self, a: int, b: int) -> tuple[int, Any]:
        raise NotImplementedError

    def running_replicas(self) -> set[str]:
        raise NotImplementedError

    def remove_replica_by_hand(self, name: str) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def proxy_frozen(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def nothing_left(self) -> list[str]:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError


class FakeSubject(Subject):
    provider = "fake"

    def __init__(self, directory: Path, fake: Any) -> None:
        super().__init__(directory)
        self.fake = fake
        sys.path.insert(0, str(TESTS / "cli"))
        from test_commands import cmlplan  # type: ignore[import-not-found]

        self._cmlplan = cmlplan

    def cli(self, *args: str) -> tuple[int, str]:
        outcome = self._cmlplan(*args, "-C", str(self.dir))
        return outcome.code, outcome.out + outcome.err

    def call(self, a: int, b: int) -> tuple[int, Any]:
        world = self.fake.world.get(DEPLOYMENT)
        if not world or not world.get("processes"):
            return 404, None
        return 200, {"result": a + b}  # the fake serves what its examples promise

    def running_replicas(self) -> set[str]:
        return {p["name"] for p in (self.fake.world.get(DEPLOYMENT) or {}).get("processes") or []}

    def remove_replica_by_hand(self, name: str) -> None:
        world = self.fake.world[DEPLOYMENT]
        world["processes"] = [p for p in world["processes"] if p["name"] != name]
        world["replicas"] = len(world["processes"])

    def nothing_left(self) -> list[str]:
        return sorted(self.fake.world)

    def teardown(self) -> None:
        self.cli("destroy", "-auto-approve")


class LocalSubject(Subject):
    provider = "local"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        local = _load("cmlplan_contract_local", TESTS / "providers" / "local" / "localws.py")
        self.ws = local.LiveWorkspace(directory)

    def cli(self, *args: str) -> tuple[int, str]:
        result = self.ws.cli(*args, check=False)
        return result.returncode, result.stdout + result.stderr

    def call(self, a: int, b: int) -> tuple[int, Any]:
        status, body = self.ws.call(MODEL, {"a": a, "b": b})
        return status, body.get("response")

    def running_replicas(self) -> set[str]:
        return {p.name for p in self.ws.programs("r.")}

    def remove_replica_by_hand(self, name: str) -> None:
        self.ws.supervisor.remove_program(name)

    @contextlib.contextmanager
    def proxy_frozen(self) -> Iterator[None]:
        pids = [p.pid for p in self.ws.programs("cmlplan-proxy") if p.pid]
        assert pids, "no proxy process"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def nothing_left(self) -> list[str]:
        return [p.name for p in self.ws.programs()] + (["supervisord"] if self.ws.supervisor.is_running() else [])

    def teardown(self) -> None:
        self.ws.teardown()


class DockerSubject(Subject):
    provider = "docker"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.dockerws = _load("cmlplan_contract_dockerws", TESTS / "providers" / "docker" / "dockerws.py")
        self.ws = self.dockerws.DockerWorkspace(directory, "contract")

    def cli(self, *args: str) -> tuple[int, str]:
        result = self.ws.cli(*args, check=False)
        return result.returncode, result.stdout + result.stderr

    def call(self, a: int, b: int) -> tuple[int, Any]:
        status, body = self.ws.call(MODEL, {"a": a, "b": b})
        return status, body.get("response")

    def running_replicas(self) -> set[str]:
        return {n for n in self.ws.containers() if "-proxy-" not in n}

    def remove_replica_by_hand(self, name: str) -> None:
        self.dockerws.docker("rm", "-f", name)

    @contextlib.contextmanager
    def proxy_frozen(self) -> Iterator[None]:
        name = f"cmlplan-{self.ws.name}-proxy-0"
        self.dockerws.docker("pause", name)
        try:
            yield
        finally:
            self.dockerws.docker("unpause", name, check=False)

    def nothing_left(self) -> list[str]:
        left = self.ws.leftovers()
        return left["containers"] + left["networks"]

    def teardown(self) -> None:
        self.ws.teardown()


class KubernetesSubject(Subject):
    """The kubernetes provider on the fake API (tests/providers/kubernetes/fakeapi.py), in-process.

    Its replicas are the pods of the model's Deployment: ``recorded`` are those of the template the
    Deployment runs now, ``running`` every pod of the Deployment. The pods run the model from a
    snapshot of the build (fakepods.py), so a crashing or wrong model fails as it would.
    """

    provider = "kubernetes"
    new_build_replaces = False
    OBJECT = "cmlplan-add-numbers-demo-numbers-add"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        sys.path.insert(0, str(TESTS / "providers" / "kubernetes"))
        sys.path.insert(0, str(TESTS / "cli"))
        from fakeapi import FakeKubernetes  # type: ignore[import-not-found]
        from fakepods import ModelPods, SnapshotImages  # type: ignore[import-not-found]
        from test_commands import cmlplan  # type: ignore[import-not-found]

        from cmlplan.providers import registry
        from cmlplan.providers.kubernetes.provider import KubernetesProvider

        self._cmlplan = cmlplan
        self.cluster = FakeKubernetes().start()
        kubeconfig = self.cluster.kubeconfig(directory.parent / "kubeconfig", context="contract")
        spec = directory / "cmlplan.yaml"
        spec.write_text(spec.read_text().replace(
            "provider: local", f"provider: kubernetes\n  kubernetes: {{context: contract, kubeconfig: {kubeconfig}}}"
        ))
        self.pods: Any = None

        def factory(context: Any) -> Any:
            provider = KubernetesProvider(context)
            provider.publisher = self.images
            return provider

        from cmlplan.providers.kubernetes.objects import Target

        self.images = SnapshotImages(Target(workspace="add-numbers-demo", namespace="default"), directory.parent / "images")
        self.pods = ModelPods(self.cluster, self.images)
        registry.register_provider("kubernetes", factory)
        self._environ = {k: os.environ.get(k) for k in ("CMLPLAN_K8S_POLL", "CMLPLAN_ROLLOUT_TIMEOUT")}
        os.environ.update(CMLPLAN_K8S_POLL="0.02", CMLPLAN_ROLLOUT_TIMEOUT="10")

    def cli(self, *args: str) -> tuple[int, str]:
        outcome = self._cmlplan(*args, "-C", str(self.dir))
        return outcome.code, outcome.out + outcome.err

    def _pods(self, current_only: bool) -> set[str]:
        deployment = self.cluster.get("Deployment", self.OBJECT)
        if deployment is None:
            return set()
        pods = [o for (k, _ns, _n), o in self.cluster.objects.items() if k == "Pod"]
        mine = [p for p in pods if p["metadata"].get("ownerDeployment") == self.OBJECT]
        if current_only:
            mine = [p for p in mine if p["status"]["containerStatuses"] and p["status"]["containerStatuses"][0]["ready"]]
        return {p["metadata"]["name"] for p in mine}

    def recorded_replicas(self) -> set[str]:
        return self._pods(current_only=True)

    def running_replicas(self) -> set[str]:
        return self._pods(current_only=False)

    def call(self, a: int, b: int) -> tuple[int, Any]:
        import base64

        secret = self.cluster.get("Secret", "cmlplan-add-numbers-demo-routes")
        if secret is None:
            return 404, None
        table = json.loads(base64.b64decode(secret["data"]["routes.json"]))
        entry = next((m for m in table["models"].values() if m["address"] == MODEL), None)
        if entry is None or not entry["replicas"]:
            return 404, None
        service = entry["replicas"][0]["url"].removeprefix("http://").split(".", 1)[0]
        status, body = self.pods.call(service, "/predict", {"a": a, "b": b})
        return status, body.get("response")

    def nothing_left(self) -> list[str]:
        return [n for n in self.cluster.names() if not n.startswith("Event/")]

    def teardown(self) -> None:
        from cmlplan.providers import registry

        try:
            self.cli("destroy", "-auto-approve")
        finally:
            registry._FACTORIES.pop("kubernetes", None)
            self.cluster.stop()
            for key, value in self._environ.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def copy_example(target: Path) -> Path:
    shutil.copytree(EXAMPLES / "add-numbers", target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__"))
    return target


def docker_ready() -> str | None:
    """None when a Docker engine answers and the base image exists, else why not."""
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "no Docker engine answers"
    image = subprocess.run(
        ["docker", "image", "inspect", "cmlplan-local/python:3.11-bookworm"], capture_output=True, timeout=30, check=False
    )
    return None if image.returncode == 0 else "the base image is not built (scripts/docker-base-image)"
