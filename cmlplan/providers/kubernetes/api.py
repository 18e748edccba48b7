"""A thin, synchronous layer over the official client's ``ApiClient``: JSON in, JSON out.

The typed client methods turn every answer into generated model classes; cmlplan builds and
compares plain manifests, so it calls the REST paths through ``ApiClient.call_api`` (same
configuration, authentication, TLS and retries) and keeps dicts. Server-side apply is a PATCH
with ``application/apply-patch+yaml`` (JSON is YAML) and ``fieldManager``; ``force`` only when
the user asked for it. Errors become one-line ``ProviderError``s naming the object.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..base import ProviderError


@dataclass(frozen=True)
class Kind:
    group_version: str  # "v1" or "apps/v1"
    plural: str

    def collection(self, namespace: str) -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        return f"{root}/namespaces/{namespace}/{self.plural}"


KINDS = {
    "Deployment": Kind("apps/v1", "deployments"),
    "ReplicaSet": Kind("apps/v1", "replicasets"),
    "Service": Kind("v1", "services"),
    "Secret": Kind("v1", "secrets"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Pod": Kind("v1", "pods"),
    "Event": Kind("v1", "events"),
    "HorizontalPodAutoscaler": Kind("autoscaling/v2", "horizontalpodautoscalers"),
}
OWNED_KINDS = ("HorizontalPodAutoscaler", "Deployment", "Service", "Secret", "ConfigMap")  # delete order


class ConflictError(ProviderError):
    """Server-side apply found fields another manager owns with other values."""


def connect(kubeconfig: str | None, context: str | None) -> k8s.ApiClient:
    """An ApiClient for the Workspace's kubeconfig and context (in-cluster when there is none)."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    path = os.path.expanduser(path)
    try:
        if Path(path).is_file():
            return k8s_config.new_client_from_config(config_file=path, context=context, persist_config=False)
        if kubeconfig:
            raise ProviderError(f"kubernetes.kubeconfig {kubeconfig!r}: no such file")
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        return k8s.ApiClient(configuration)
    except ConfigException as exc:
        where = f"context {context!r} of {path}" if context else path
        raise ProviderError(f"cannot load the kubeconfig ({where}): {exc}") from None


class KubeApi:
    """The REST calls cmlplan makes, in one namespace."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace

    # -- objects ----------------------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any], manager: str, *, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        query: list[tuple[str, Any]] = [("fieldManager", manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        path = f"{KINDS[kind].collection(self.namespace)}/{name}"
        try:
            return self._call("PATCH", path, query, body=manifest, content_type="application/apply-patch+yaml")
        except ApiException as exc:
            if exc.status == 409:
                raise ConflictError(
                    f"{kind}/{name} in namespace {self.namespace}: fields cmlplan applies are managed by someone "
                    f"else ({_reason(exc)}); set kubernetes.force_conflicts: true in the Workspace (or CMLPLAN_K8S_FORCE_CONFLICTS=1) to take them over"
                ) from None
            raise self._error(f"cannot apply {kind}/{name}", exc) from None

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"{KINDS[kind].collection(self.namespace)}/{name}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(f"cannot read {kind}/{name}", exc) from None

    def list(self, kind: str, label_selector: str = "", field_selector: str = "") -> list[dict[str, Any]]:
        query = [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        try:
            found = self._call("GET", KINDS[kind].collection(self.namespace), query)
        except ApiException as exc:
            raise self._error(f"cannot list {KINDS[kind].plural}", exc) from None
        return list(found.get("items") or [])

    def delete(self, kind: str, name: str) -> bool:
        """Delete (pods and ReplicaSets go with their Deployment); False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._call("DELETE", f"{KINDS[kind].collection(self.namespace)}/{name}", body=body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise self._error(f"cannot delete {kind}/{name}", exc) from None
        return True

    def events(self, kind: str, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        return self.list("Event", field_selector=selector)

    def service_post(self, service: str, port: int, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        """POST through the API server's service proxy (how this host reaches a ClusterIP Service)."""
        url = f"/api/v1/namespaces/{self.namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        try:
            data = self._call("POST", url, body=body, timeout=timeout)
            return 200, data
        except ApiException as exc:
            try:
                return int(exc.status or 0), json.loads(exc.body or "null")
            except ValueError:
                return int(exc.status or 0), exc.body

    def namespace_exists(self) -> bool:
        try:
            self._call("GET", f"/api/v1/namespaces/{self.namespace}")
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return True  # may not read namespaces, may still use this one
            raise self._error(f"cannot read namespace {self.namespace}", exc) from None
        return True

    def close(self) -> None:
        self.api_client.close()

    # -- helpers ----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        client = self.api_client
        try:
            request = client.param_serialize(
                method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            response = client.call_api(*request, _request_timeout=timeout)
            response.read()
        except Exception as exc:  # urllib3 connection errors and the like
            host = client.configuration.host
            raise ProviderError(f"cannot reach the Kubernetes API at {host}: {type(exc).__name__}: {exc}") from None
        text = (response.data or b"").decode("utf-8", errors="replace")
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise ProviderError(f"the Kubernetes API answered {method} {path} with non-JSON") from None

    def _error(self, what: str, exc: ApiException) -> ProviderError:
        return ProviderError(f"{what} in namespace {self.namespace}: {exc.status} {_reason(exc)}")


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "no reason given").replace("\n", " ")
