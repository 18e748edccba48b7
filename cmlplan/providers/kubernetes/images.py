"""Images for the cluster: built exactly as the docker provider builds them, then pushed.

The build itself is ``providers/images.py`` (shared with the docker provider). With
``kubernetes.image_registry`` set, each image is tagged ``<registry>/<local tag>`` and pushed there;
without it the cluster is expected to see the host's images (``kind load docker-image``,
``minikube image load``), and nothing is pushed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..base import Progress, ProviderError
from ..images import ImageBuilder, ImageRequest
from .objects import Target


@dataclass(frozen=True)
class Published:
    ref: str  # what the pods pull
    image_id: str
    context_dir: str


class ImagePublisher(Protocol):
    def build(self, request: ImageRequest) -> Published: ...

    def proxy(self, progress: Progress) -> str: ...

    def proxy_tag(self) -> str: ...

    def close(self) -> None: ...


class DockerPublisher:
    """Builds with the host's Docker engine and pushes to the Workspace's image registry."""

    def __init__(self, root: Path, base_image: str, target: Target) -> None:
        self.root = root
        self.base_image = base_image
        self.target = target
        self._client: Any = None
        self._builder: ImageBuilder | None = None

    def _connect(self) -> ImageBuilder:
        if self._builder is None:
            import docker
            import docker.errors

            try:
                client = docker.from_env(timeout=300)
                client.ping()
            except docker.errors.DockerException as exc:
                raise ProviderError(
                    f"the kubernetes provider builds images with the host's Docker engine, which cannot be reached ({exc})"
                ) from None
            self._client = client
            self._builder = ImageBuilder(client.api, self.root, self.base_image)
        return self._builder

    def proxy_tag(self) -> str:
        return ImageBuilder(None, self.root, self.base_image).proxy_tag()

    def build(self, request: ImageRequest) -> Published:
        builder = self._connect()
        outcome = builder.build(request)
        ref = self._push(outcome.tag, request.progress)
        return Published(ref=ref, image_id=outcome.image_id, context_dir=str(outcome.context_dir))

    def proxy(self, progress: Progress) -> str:
        tag = self._connect().ensure_proxy_image(progress)
        return self._push(tag, progress)

    def _push(self, tag: str, progress: Progress) -> str:
        ref = self.target.image(tag)
        if ref == tag:
            return tag
        repository, _, version = ref.rpartition(":")
        api = self._client.api
        api.tag(tag, repository, version)
        progress(f"pushing {ref}")
        for line in api.push(repository, tag=version, stream=True, decode=True):
            error = line.get("error") or (line.get("errorDetail") or {}).get("message")
            if error:
                raise ProviderError(f"cannot push {ref}: {error}")
        return ref

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
            self._builder = None
