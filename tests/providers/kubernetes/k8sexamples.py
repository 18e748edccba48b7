"""The examples as the kubernetes provider would apply them: planned attributes -> objects.

An example folder is copied with only its Workspace's ``provider:`` line changed (what
examples/iris promises), planned in-process (a plan of a fresh workspace needs no cluster), and
its deployments' and proxy's planned attributes are turned into the objects apply would send.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from cmlplan.engine.planner import PlanOptions
from cmlplan.engine.workspace import Workspace
from cmlplan.providers.kubernetes import objects as ob

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
PROXY_IMAGE = "cmlplan/proxy:<version>-<digest>"  # the real tag hashes the serving code: not golden


def kubernetes_copy(example: str, target: Path, extra_settings: str = "") -> Path:
    """A copy of ``examples/<example>`` whose Workspace says ``provider: kubernetes``."""
    directory = target / example
    shutil.copytree(EXAMPLES / example, directory, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "*.pkl"))
    spec = directory / "cmlplan.yaml"
    text = spec.read_text()
    assert text.count("provider: local") == 1
    replacement = "provider: kubernetes" + (f"\n  kubernetes: {extra_settings}" if extra_settings else "")
    spec.write_text(text.replace("provider: local", replacement))
    return directory


def planned(directory: Path) -> dict[str, dict[str, Any]]:
    """Planned attributes by address (unknown values as the plan shows them)."""

    async def go() -> dict[str, dict[str, Any]]:
        workspace = Workspace.open(directory, environ={})
        async with workspace.session(workspace.read_state()) as session:
            run = await session.plan(PlanOptions())
        return {c.address: dict(c.after) for c in run.plan.changes if c.after is not None}

    return asyncio.run(go())


def rendered(directory: Path, deployment_id: int = 1) -> tuple[ob.Target, list[dict[str, Any]]]:
    """Every object apply would send for the example, in apply order (proxy last)."""
    workspace = Workspace.open(directory, environ={})
    settings = workspace.config.workspace_spec.kubernetes
    target = ob.Target(
        workspace=workspace.name, namespace=settings.namespace, image_registry=settings.image_registry,
        image_pull_secret=settings.image_pull_secret, progress_deadline=int(settings.rollout_timeout),
    )
    manifests: list[dict[str, Any]] = []
    plan = planned(directory)
    for address, attributes in sorted(plan.items()):
        if address.startswith("deployment."):
            manifests += ob.model_objects(target, address, {**attributes, "deployment_id": deployment_id}, {})
    proxy_address, proxy = next((a, v) for a, v in plan.items() if a.startswith("proxy."))
    manifests += ob.proxy_objects(target, proxy_address, proxy, target.image(PROXY_IMAGE), b'{"version": 1}')
    return target, manifests


def add_numbers_pods(_service: str, path: str, body: Any) -> tuple[int, Any]:
    """What add-numbers' pods answer through the service proxy: the model, computed."""
    if path != "/predict":
        return 404, {"message": f"no route {path}"}
    return 200, {"success": True, "response": {"result": body["a"] + body["b"]}, "ReplicaID": "pod-0"}
