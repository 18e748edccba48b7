"""The Kubernetes objects a model and the proxy become: pure functions of planned attributes.

Per model: a Deployment (the replicas; RollingUpdate with maxUnavailable 0, so a new build or new
settings never drop a serving replica; readiness and liveness on the replica's /healthz), a
Service whose ports are the proxy's replica slots, a Secret when env values come from
``${env:...}``, and a HorizontalPodAutoscaler when ``deployment.autoscale`` is set (then the
Deployment leaves ``replicas`` to it). The proxy: a Deployment (routes digest in its pod
template, so a routing change rolls it without dropping traffic), a Service, and the routing
table in a Secret (it holds the key hashes).

Nothing here talks to a cluster; the same functions feed apply, the golden files and the offline
schema validation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...serving.defaults import METRICS_DSN_ENV
from ..base import Attributes
from ..deployments import prediction_timeout
from . import names

REPLICA_PORT = 8080
SLOT_BASE_PORT = 8080  # Service port of replica slot i is SLOT_BASE_PORT + i (all target the pod's 8080)
ROUTES_MOUNT = "/routes"
STOP_GRACE = 40  # a draining replica may finish a prediction (the proxy gives up after 35 s)
STARTUP_SECONDS = 120  # a replica may take this long to import its model
GPU_RESOURCE = "nvidia.com/gpu"
IN_FLIGHT_METRIC = "cmlplan_replica_in_flight"
ROUTES_OWNER = "routes"  # the routes Secret is written by deployments and the proxy alike

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """Where the objects go and what they pull: from the Workspace's kubernetes settings."""

    workspace: str
    namespace: str
    image_registry: str | None = None
    image_pull_secret: str | None = None
    progress_deadline: int = 600

    def image(self, local_tag: str) -> str:
        """The reference the kubelet pulls for a locally built ``local_tag``."""
        if not self.image_registry:
            return local_tag  # a cluster that shares the host's images (kind load, minikube image load)
        return f"{self.image_registry.rstrip('/')}/{local_tag}"


def model_image_tag(workspace: str, planned: Attributes) -> str:
    project, model = planned["project"], planned["name"]
    return f"cmlplan/{workspace}-{project}-{model}:{int(planned['build'])}"


def slots(planned: Attributes) -> int:
    """How many replica slots the proxy gets (each serves one request at a time)."""
    autoscale = planned.get("autoscale") or {}
    if autoscale:
        return int(autoscale["max"])
    return max(1, int(planned.get("replicas") or 1))


# -- models -------------------------------------------------------------------------------------


def model_objects(target: Target, address: str, planned: Attributes, secret_env: Mapping[str, str]) -> list[Manifest]:
    """Every object of one deployment, in apply order. ``secret_env`` holds resolved ${env:} values."""
    workspace, project, model = target.workspace, planned["project"], planned["name"]
    name = names.model_object(workspace, project, model)
    secret_name = names.env_secret(workspace, project, model)
    secret_keys = sorted(k for k in (planned.get("env") or {}) if k in (planned.get("env_fingerprints") or {}))
    objects: list[Manifest] = []
    if secret_keys:
        objects.append(_env_secret(target, address, secret_name, {k: secret_env.get(f"env.{k}", "") for k in secret_keys}))
    objects.append(_model_deployment(target, address, name, planned, secret_name, set(secret_keys)))
    objects.append(_service(target, address, name, "replica", _slot_ports(planned)))
    autoscale = planned.get("autoscale")
    if autoscale:
        objects.append(_autoscaler(target, address, name, autoscale))
    return objects


def _model_deployment(
    target: Target, address: str, name: str, planned: Attributes, secret_name: str, secret_keys: set[str]
) -> Manifest:
    cpu = float(planned.get("cpu") or 1)
    threads = str(max(1, math.ceil(cpu)))
    env: list[dict[str, Any]] = []
    for key, value in sorted((planned.get("env") or {}).items()):
        if key in secret_keys:
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
        else:
            env.append({"name": key, "value": str(value)})
    env += [
        {"name": "OMP_NUM_THREADS", "value": threads},
        {"name": "OPENBLAS_NUM_THREADS", "value": threads},
        {"name": "MKL_NUM_THREADS", "value": threads},
        {"name": "CMLPLAN_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    command = [
        "python", "-m", "cmlplan.serving.replica", "--source", "/app", "--file", str(planned["file"]),
        "--function", str(planned["function"]), "--host", "0.0.0.0", "--port", str(REPLICA_PORT),
        "--replica-id", "$(CMLPLAN_POD_NAME)", "--prediction-timeout", f"{prediction_timeout(planned):g}",
        "--usage-source", "cgroup",  # the pod's container cgroup, as the kubelet's cAdvisor reads it
    ]
    resources = _resources(cpu, int(planned["memory"]), int(planned.get("gpus") or 0))
    labels = names.base_labels(target.workspace, address, "replica")
    build = str(int(planned["build"]))
    annotations = {names.ANNOTATION_ADDRESS: address}
    if planned.get("env_fingerprints"):
        # a new secret value must roll the pods (the env Secret is read at start only)
        annotations[names.ANNOTATION_ENV] = _digest(planned["env_fingerprints"])
    spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector(target.workspace, address, "replica")},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": target.progress_deadline,
        "template": {
            "metadata": {"labels": {**labels, names.LABEL_BUILD: build}, "annotations": annotations},
            "spec": {
                **_pod_basics(target),
                "containers": [
                    {
                        "name": "replica",
                        "image": target.image(model_image_tag(target.workspace, planned)),
                        "imagePullPolicy": "IfNotPresent",
                        "command": command,
                        "env": env,
                        "ports": [{"name": "http", "containerPort": REPLICA_PORT, "protocol": "TCP"}],
                        "resources": resources,
                        "startupProbe": _probe(period=2, failures=STARTUP_SECONDS // 2),
                        "readinessProbe": _probe(period=2, failures=2),
                        "livenessProbe": _probe(period=10, failures=6),
                        "securityContext": _container_security(),
                    }
                ],
            },
        },
    }
    if not planned.get("autoscale"):
        # with an autoscaler the HPA owns spec.replicas: cmlplan leaves the field to it
        spec["replicas"] = 0 if planned.get("stopped") else int(planned["replicas"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target, name, address, "replica", {names.LABEL_BUILD: build}),
        "spec": spec,
    }


def _resources(cpu: float, memory: int, gpus: int) -> dict[str, Any]:
    amount = {"cpu": _cpu_quantity(cpu), "memory": _memory_quantity(memory)}
    limits = dict(amount)
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)  # extended resources: requests default to limits
    return {"requests": amount, "limits": limits}


def _cpu_quantity(cpu: float) -> str:
    millis = round(cpu * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _memory_quantity(memory: int) -> str:
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if memory % unit == 0:
            return f"{memory // unit}{suffix}"
    return str(memory)


def _probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _slot_ports(planned: Attributes) -> list[dict[str, Any]]:
    return [
        {"name": f"slot-{i}", "port": SLOT_BASE_PORT + i, "targetPort": "http", "protocol": "TCP"}
        for i in range(slots(planned))
    ]


def slot_urls(target: Target, planned: Attributes) -> list[dict[str, Any]]:
    """The proxy's replica entries for a model: one per slot, each a port of the model's Service."""
    name = names.model_object(target.workspace, planned["project"], planned["name"])
    host = f"{name}.{target.namespace}.svc"
    return [
        {
            "name": f"{name}:{SLOT_BASE_PORT + i}",
            "index": i,
            "replica_id": f"{planned['name']}-{planned.get('deployment_id')}-{i}-{planned['project']}",
            "url": f"http://{host}:{SLOT_BASE_PORT + i}",
        }
        for i in range(0 if planned.get("stopped") else slots(planned))
    ]


def _env_secret(
    target: Target, address: str, name: str, values: Mapping[str, str], component: str = "replica"
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(target, name, address, component),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }


def _autoscaler(target: Target, address: str, name: str, autoscale: Mapping[str, Any]) -> Manifest:
    if autoscale.get("cpu"):
        metric: dict[str, Any] = {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": int(autoscale["cpu"])}},
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": IN_FLIGHT_METRIC},
                "target": {"type": "AverageValue", "averageValue": _decimal(float(autoscale["target_in_flight"]))},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(target, name, address, "replica"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": int(autoscale["min"]),
            "maxReplicas": int(autoscale["max"]),
            "metrics": [metric],
        },
    }


def _decimal(value: float) -> str:
    millis = round(value * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


# -- the proxy ----------------------------------------------------------------------------------


def proxy_objects(
    target: Target, address: str, planned: Attributes, proxy_image: str, routes: bytes, metrics_dsn: str | None = None
) -> list[Manifest]:
    """The proxy's Secrets (routing table; the metrics store's DSN when there is one), Deployment and
    Service; ``proxy_image`` is what the pods pull."""
    name = names.proxy_object(target.workspace)
    annotations = {names.ANNOTATION_ADDRESS: address}
    env: list[dict[str, Any]] = []
    secrets: list[Manifest] = []
    if metrics_dsn:
        secret = names.metrics_secret(target.workspace)
        secrets.append(_env_secret(target, address, secret, {"dsn": metrics_dsn}, "proxy"))
        env.append({"name": METRICS_DSN_ENV, "valueFrom": {"secretKeyRef": {"name": secret, "key": "dsn"}}})
        # a new password must roll the pods (the DSN is read at start only); the fingerprint is salted
        annotations[names.ANNOTATION_ENV] = _digest(planned.get("metrics_store"))
    port = int(planned["port"])
    labels = names.base_labels(target.workspace, address, "proxy")
    command = [
        "python", "-m", "cmlplan.serving.proxy", "--routes", f"{ROUTES_MOUNT}/routes.json",
        "--host", "0.0.0.0", "--port", str(port),
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target, name, address, "proxy"),
        "spec": {
            "replicas": int(planned.get("replicas") or 1),
            "selector": {"matchLabels": names.selector(target.workspace, address, "proxy")},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": target.progress_deadline,
            "template": {
                # the routes digest annotation is applied apart (``routes_bump``, its own field manager)
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    **_pod_basics(target),
                    "containers": [
                        {
                            "name": "proxy",
                            "image": proxy_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": command,
                            **({"env": env} if env else {}),
                            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "readinessProbe": _probe(period=2, failures=2),
                            "livenessProbe": _probe(period=10, failures=6),
                            "volumeMounts": [{"name": "routes", "mountPath": ROUTES_MOUNT, "readOnly": True}],
                            "securityContext": _container_security(),
                        }
                    ],
                    "volumes": [{"name": "routes", "secret": {"secretName": names.routes_secret(target.workspace)}}],
                },
            },
        },
    }
    return [
        routes_object(target, routes),
        *secrets,
        deployment,
        _service(target, address, name, "proxy", [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]),
    ]


def routes_object(target: Target, routes: bytes) -> Manifest:
    """The routing table the proxy pods mount (a Secret: it holds the key hashes)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(target, names.routes_secret(target.workspace), ROUTES_OWNER, "proxy"),
        "type": "Opaque",
        "data": {"routes.json": base64.b64encode(routes).decode()},
    }


def routes_digest(routes: bytes) -> str:
    """What rolls the proxy pods: the routing table without its generation counter."""
    try:
        table = json.loads(routes)
    except ValueError:
        table = {"raw": routes.decode(errors="replace")}
    if isinstance(table, dict):
        table = {k: v for k, v in table.items() if k != "generation"}
    return _digest(table)


def routes_bump(target: Target, routes: bytes) -> Manifest:
    """The partial apply (field manager ``cmlplan-routes``, the annotation's only owner) that rolls
    the proxy pods to new routes; an unchanged table changes nothing."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.proxy_object(target.workspace), "namespace": target.namespace},
        "spec": {"template": {"metadata": {"annotations": {names.ANNOTATION_ROUTES: routes_digest(routes)}}}},
    }


# -- shared -------------------------------------------------------------------------------------


def _metadata(
    target: Target, name: str, address: str, component: str, extra_labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": {**names.base_labels(target.workspace, address, component), **(extra_labels or {})},
        "annotations": {names.ANNOTATION_ADDRESS: address},
    }


def _service(target: Target, address: str, name: str, component: str, ports: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(target, name, address, component),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector(target.workspace, address, component),
            "ports": ports,
        },
    }


def _pod_basics(target: Target) -> dict[str, Any]:
    basics: dict[str, Any] = {
        "terminationGracePeriodSeconds": STOP_GRACE,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534},
    }
    if target.image_pull_secret:
        basics["imagePullSecrets"] = [{"name": target.image_pull_secret}]
    return basics


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def ref(manifest: Manifest) -> str:
    """``Kind/name``: how state records an object."""
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
