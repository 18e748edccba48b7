"""Fixtures: a fake Kubernetes API on loopback and an add-numbers workspace pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakeapi import FakeKubernetes  # noqa: E402
from k8sexamples import add_numbers_pods, kubernetes_copy  # noqa: E402

from cmlplan.providers import registry  # noqa: E402
from cmlplan.providers.base import ProviderContext  # noqa: E402
from cmlplan.providers.images import ImageRequest  # noqa: E402
from cmlplan.providers.kubernetes.images import Published  # noqa: E402
from cmlplan.providers.kubernetes.objects import Target  # noqa: E402
from cmlplan.providers.kubernetes.provider import KubernetesProvider  # noqa: E402


class PrebuiltImages:
    """Stands in for the Docker engine (tests/providers/docker builds real images): it checks the
    build request is complete and answers with the reference a push would give."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.built: list[str] = []

    def build(self, request: ImageRequest) -> Published:
        for path, entry in request.manifest.items():
            assert (request.source_dir / path).stat().st_size == entry.size
        project, _, model = request.model_key.partition("/")
        self.built.append(request.address)
        tag = f"cmlplan/{request.workspace}-{project}-{model}:{request.number}"
        return Published(ref=self.target.image(tag), image_id=f"sha256:{request.build_hash[:12]}", context_dir=str(request.source_dir))

    def proxy_tag(self) -> str:
        return "cmlplan/proxy:test"

    def proxy(self, progress: Any) -> str:
        return self.target.image(self.proxy_tag())

    def close(self) -> None:
        return None


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes(namespaces=("default", "ml")).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def k8s_provider_factory() -> Iterator[list[KubernetesProvider]]:
    """The kubernetes provider with PrebuiltImages; yields every provider instance made."""
    made: list[KubernetesProvider] = []

    def factory(context: ProviderContext) -> KubernetesProvider:
        provider = KubernetesProvider(context)
        provider.publisher = PrebuiltImages(provider.target)
        made.append(provider)
        return provider

    registry.register_provider("kubernetes", factory)
    try:
        yield made
    finally:
        registry._FACTORIES.pop("kubernetes", None)


@pytest.fixture
def k8s_ws(tmp_path: Path, cluster: FakeKubernetes, k8s_provider_factory: list[Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    """examples/add-numbers on the fake cluster, namespace ml, through a kubeconfig context."""
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", context="fake-ctx")
    monkeypatch.setenv("CMLPLAN_K8S_POLL", "0.02")
    monkeypatch.setenv("CMLPLAN_ROLLOUT_TIMEOUT", "10")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    directory = kubernetes_copy(
        "add-numbers", tmp_path, f"{{namespace: ml, context: fake-ctx, kubeconfig: {kubeconfig}, image_registry: localhost:5000}}"
    )
    cluster.service_handler = add_numbers_pods
    return directory
