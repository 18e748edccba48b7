"""Reading back: the recorded attributes of a deployment or the proxy as the cluster shows them now.

Replicas, resources, GPUs, plain env values, the build label and the image come from the live
Deployment, so a change made by hand is drift; an object deleted by hand drops out of
``processes`` (and the plan then makes ``processes`` unknown, so apply creates it again).
"""

from __future__ import annotations

from typing import Any

from kubernetes.utils import parse_quantity

from ...values import UNKNOWN
from ..base import Attributes
from . import names
from . import objects as ob

INTERNAL_ENV = frozenset({"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CMLPLAN_POD_NAME"})


def observed_deployment(workspace: str, recorded: Attributes, live: dict[str, dict[str, Any]]) -> Attributes | None:
    """The recorded deployment as its live Deployment shows it (None when the Deployment is gone)."""
    name = names.model_object(workspace, str(recorded.get("project")), str(recorded.get("name")))
    deployment = live.get(f"Deployment/{name}")
    if deployment is None:
        return None
    observed = dict(recorded)
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    container = next(iter((template.get("spec") or {}).get("containers") or []), {})
    if not recorded.get("autoscale"):
        replicas = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        if not (recorded.get("stopped") and replicas == 0):  # a stopped model runs no pods
            observed["stopped"] = False
            observed["replicas"] = replicas
    requests = (container.get("resources") or {}).get("requests") or {}
    limits = (container.get("resources") or {}).get("limits") or {}
    if "cpu" in requests:
        observed["cpu"] = float(parse_quantity(requests["cpu"]))
    if "memory" in requests:
        observed["memory"] = int(parse_quantity(requests["memory"]))
    gpus = int(parse_quantity(limits[ob.GPU_RESOURCE])) if ob.GPU_RESOURCE in limits else 0
    if gpus or "gpus" in recorded:
        observed["gpus"] = gpus
    env: dict[str, str] = {}
    recorded_env = recorded.get("env") or {}
    for entry in container.get("env") or []:
        key = entry.get("name")
        if key in INTERNAL_ENV:
            continue
        if "value" in entry:
            env[key] = str(entry["value"])
        elif "valueFrom" in entry and key in recorded_env:
            env[key] = recorded_env[key]  # a Secret reference: its value is not read back
    observed["env"] = env
    build = ((template.get("metadata") or {}).get("labels") or {}).get(names.LABEL_BUILD)
    if build and build.isdigit():
        observed["build"] = int(build)
    if container.get("image"):
        observed["image"] = container["image"]
    observed["processes"] = present(recorded, live)
    return observed

def observed_proxy(workspace: str, recorded: Attributes, live: dict[str, dict[str, Any]]) -> Attributes | None:
    """The recorded proxy as its live Deployment shows it (None when the Deployment is gone)."""
    deployment = live.get(f"Deployment/{names.proxy_object(workspace)}")
    if deployment is None:
        return None
    observed = dict(recorded)
    replicas = (deployment.get("spec") or {}).get("replicas")
    observed["replicas"] = int(replicas if replicas is not None else 1)
    container = next(iter(((deployment["spec"].get("template") or {}).get("spec") or {}).get("containers") or []), {})
    if container.get("image"):
        observed["image"] = container["image"]
    observed["processes"] = present(recorded, live)
    return observed


def planned_objects(current: Attributes | None, manifests: list[dict[str, Any]]) -> Any:
    """The objects as live when they are all there; unknown (apply makes them) when any is missing."""
    processes = (current or {}).get("processes")
    if not isinstance(processes, list):
        return UNKNOWN
    wanted = sorted(ob.ref(m) for m in manifests)
    return processes if sorted(str(p.get("name")) for p in processes if isinstance(p, dict)) == wanted else UNKNOWN


def present(recorded: Attributes, live: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded objects that still exist (one deleted by hand drops out: drift)."""
    return [p for p in recorded.get("processes") or [] if isinstance(p, dict) and p.get("name") in live]
