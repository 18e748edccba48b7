"""Images for the cluster are built on the host's Docker engine and pushed to a real registry
(Debian's docker-registry, started here on a loopback port); the fake API then runs what was
pushed. Slow: it builds real images."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi import FakeKubernetes
from k8sexamples import add_numbers_pods, kubernetes_copy
from test_k8s_provider import apply

from cmlplan.providers import registry
from cmlplan.providers.kubernetes.provider import KubernetesProvider

pytestmark = [pytest.mark.slow, pytest.mark.docker]
BASE_IMAGE = "cmlplan-local/python:3.11-bookworm"  # what the docker tests build from, offline


WORKSPACE = "k8s-push"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False).returncode:
        return f"no {BASE_IMAGE} image (scripts/docker-base-image)"
    return None


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (scripts/setup installs it)")
    why = _docker_ready()
    if why:
        pytest.skip(why)
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"docker-registry did not start: {process.stderr.read() if process.stderr else ''}") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def tags(registry_host: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry_host}/v2/{repository}/tags/list", timeout=10) as response:
        return list(json.loads(response.read()).get("tags") or [])


def test_builds_are_pushed_and_the_pods_pull_them(
    tmp_path: Path, cluster: FakeKubernetes, local_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register_provider("kubernetes", KubernetesProvider)  # the real publisher: Docker + push
    try:
        kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", context="fake-ctx")
        monkeypatch.setenv("CMLPLAN_K8S_POLL", "0.02")
        monkeypatch.delenv("KUBECONFIG", raising=False)
        directory = kubernetes_copy(
            "add-numbers", tmp_path,
            f"{{namespace: ml, context: fake-ctx, kubeconfig: {kubeconfig}, image_registry: {local_registry}}}\n"
            f"  docker: {{base_image: {BASE_IMAGE}}}",
        )
        # a workspace of its own: the docker provider's tests build images under add-numbers-demo's names
        spec = directory / "cmlplan.yaml"
        spec.write_text(spec.read_text().replace("name: add-numbers-demo", f"name: {WORKSPACE}"))
        cluster.service_handler = add_numbers_pods
        output = apply(directory)
        assert f"pushing {local_registry}/cmlplan/{WORKSPACE}-numbers-add:1" in output
        assert tags(local_registry, f"cmlplan/{WORKSPACE}-numbers-add") == ["1"]
        deployment = cluster.get("Deployment", f"cmlplan-{WORKSPACE}-numbers-add", "ml")
        assert deployment is not None
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
            f"{local_registry}/cmlplan/{WORKSPACE}-numbers-add:1"
        )
        proxy = cluster.get("Deployment", f"cmlplan-{WORKSPACE}-proxy", "ml")
        assert proxy is not None
        proxy_image = proxy["spec"]["template"]["spec"]["containers"][0]["image"]
        repository, _, tag = proxy_image.removeprefix(f"{local_registry}/").rpartition(":")
        assert tag in tags(local_registry, repository)
    finally:
        registry._FACTORIES.pop("kubernetes", None)
        for image in (f"{local_registry}/cmlplan/{WORKSPACE}-numbers-add:1", f"cmlplan/{WORKSPACE}-numbers-add:1"):
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True, check=False)
