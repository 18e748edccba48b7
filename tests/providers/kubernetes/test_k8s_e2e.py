"""Opt-in end to end on a real cluster: ``CMLPLAN_K8S_E2E=1 pytest -m k8s_e2e tests/providers/kubernetes``.

Uses the current kubeconfig context (kind, minikube, k3s: docs/kubernetes.md), a unique namespace,
the host's Docker engine for builds, and ``CMLPLAN_K8S_REGISTRY`` (e.g. ``localhost:5001``) as the
image registry the host pushes to and the cluster pulls from (unset: the cluster must already see
the host's images, e.g. minikube with ``eval $(minikube docker-env)``). Steps: server-side dry run of every object, apply, call the
model through the proxy with ``kubectl port-forward``, re-apply is a no-op, destroy leaves nothing,
the namespace is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8sexamples import kubernetes_copy, rendered

pytestmark = [
    pytest.mark.k8s_e2e,
    pytest.mark.skipif(os.environ.get("CMLPLAN_K8S_E2E") != "1", reason="set CMLPLAN_K8S_E2E=1 to run against a real cluster"),
]

CMLPLAN = Path(sys.executable).with_name("cmlplan")


def kubectl(*args: str, check: bool = True, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["kubectl", *(["-n", namespace] if namespace else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=check)


@pytest.fixture
def namespace() -> Iterator[str]:
    if shutil.which("kubectl") is None:
        pytest.fail("CMLPLAN_K8S_E2E=1 but kubectl is not on PATH")
    name = f"cmlplan-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def cli(directory: Path, *args: str) -> str:
    result = subprocess.run(
        [str(CMLPLAN), *args, "-C", str(directory)], env={**os.environ, "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=1800, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_add_numbers_on_a_real_cluster(tmp_path: Path, namespace: str) -> None:
    registry = os.environ.get("CMLPLAN_K8S_REGISTRY", "")
    settings = f"{{namespace: {namespace}" + (f", image_registry: {json.dumps(registry)}" if registry else "") + "}"
    directory = kubernetes_copy("add-numbers", tmp_path, settings)

    # every object, server-side dry run first: the real API server's validation and admission
    from cmlplan.providers.kubernetes.api import KubeApi, connect
    from cmlplan.providers.kubernetes.names import MANAGER

    api = KubeApi(connect(None, None), namespace)
    for manifest in rendered(directory)[1]:
        api.apply(manifest, MANAGER, dry_run=True)

    output = cli(directory, "apply", "-auto-approve")
    assert "Apply complete!" in output

    port = free_port()
    forward = subprocess.Popen(
        ["kubectl", "-n", namespace, "port-forward", "svc/cmlplan-add-numbers-demo-proxy", f"{port}:8788"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        key = (directory / ".cmlplan" / "keys" / "model.numbers_add").read_text().strip()
        body = json.dumps({"accessKey": key, "request": {"a": 3, "b": 5}}).encode()
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and answer is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/model", data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(1)
        assert answer is not None and answer["success"] and answer["response"] == {"result": 8}, answer
    finally:
        forward.terminate()
        forward.wait(10)

    assert "No changes" in cli(directory, "plan")
    cli(directory, "destroy", "-auto-approve")
    left = kubectl("get", "all,secrets,hpa", "-l", "app.kubernetes.io/managed-by=cmlplan", "-o", "name", namespace=namespace)
    assert left.stdout.strip() == ""
