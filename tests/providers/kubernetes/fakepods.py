"""Pods of the fake API that run the model: images are snapshots of the build's files, and a pod
"starts" by loading the function its container command names from the snapshot.

``SnapshotImages`` stands in for the Docker engine (tests/providers/docker builds real images);
``ModelPods`` plugs into ``FakeKubernetes``: a model that cannot be imported leaves its new pod in
CrashLoopBackOff, and calls through the service proxy run the function of the image the
Service's Deployment currently runs. All in-process; no replica process is started.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

from fakeapi import FakeKubernetes

from cmlplan.providers.images import ImageRequest
from cmlplan.providers.kubernetes.images import Published
from cmlplan.providers.kubernetes.objects import Target


class SnapshotImages:
    def __init__(self, target: Target, root: Path) -> None:
        self.target = target
        self.root = root
        self.images: dict[str, Path] = {}  # image reference -> snapshot folder

    def build(self, request: ImageRequest) -> Published:
        project, _, model = request.model_key.partition("/")
        ref = self.target.image(f"cmlplan/{request.workspace}-{project}-{model}:{request.number}")
        folder = self.root / ref.replace("/", "_").replace(":", "_")
        shutil.rmtree(folder, ignore_errors=True)
        for path in request.manifest:
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(request.source_dir / path, folder / path)
        self.images[ref] = folder
        return Published(ref=ref, image_id=f"sha256:{request.build_hash[:12]}", context_dir=str(folder))

    def proxy_tag(self) -> str:
        return "cmlplan/proxy:test"

    def proxy(self, progress: Any) -> str:
        return self.target.image(self.proxy_tag())

    def close(self) -> None:
        return None


class ModelPods:
    """Makes ``cluster``'s replica pods run the model of their image."""

    def __init__(self, cluster: FakeKubernetes, images: SnapshotImages) -> None:
        self.cluster = cluster
        self.images = images
        cluster.pod_check = self.start
        cluster.service_handler = self.call

    def _function(self, template: dict[str, Any]) -> Any:
        container = template["spec"]["containers"][0]
        command = container["command"]
        if "cmlplan.serving.replica" not in command:
            return None  # the proxy: nothing to run here
        folder = self.images.images.get(container["image"])
        if folder is None:
            raise LookupError(f"image {container['image']} was never pushed")
        file, function = command[command.index("--file") + 1], command[command.index("--function") + 1]
        return runpy.run_path(str(folder / file))[function]

    def start(self, deployment: dict[str, Any]) -> str | None:
        """None when the pod comes up, else the waiting reason it is stuck in."""
        try:
            self._function(deployment["spec"]["template"])
        except LookupError:
            return "ImagePullBackOff"
        except BaseException:  # noqa: BLE001 - SystemExit at import is what a crashing model does
            return "CrashLoopBackOff"
        return None

    def call(self, service: str, path: str, body: Any) -> tuple[int, Any]:
        deployment = self.cluster.get("Deployment", service, self._namespace(service))
        if deployment is None or path != "/predict":
            return 503, {"message": f"no endpoints available for service {service!r}"}
        try:
            answer = self._function(deployment["spec"]["template"])(body)
        except Exception as exc:  # noqa: BLE001 - a model exception answers 500, as the replica does
            return 500, {"success": False, "errors": {"model.exception": f"{type(exc).__name__}: {exc}"}}
        return 200, {"success": True, "response": answer, "ReplicaID": f"{service}-pod"}

    def _namespace(self, service: str) -> str:
        for kind, namespace, name in self.cluster.objects:
            if kind == "Service" and name == service:
                return namespace
        return "default"
