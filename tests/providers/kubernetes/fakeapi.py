"""An in-memory Kubernetes API over real HTTP on loopback, for the official client to talk to.

Enough of the API server for cmlplan: namespaced CRUD on the kinds it uses, label and field
selectors, server-side apply (field ownership per manager, conflicts on fields another manager
set to another value, ``force`` to take them over, fields a manager stops applying are removed),
JSON merge patches by other managers (``kubectl scale/edit``), generation bumps on spec changes,
cascading deletes, events, and the service proxy. Lists are atomic (real SSA merges some by key;
cmlplan always applies whole objects, so this does not change what the tests see).

A tiny deployment controller fills in status: ``mode`` per Deployment name says how its rollouts
go: ``ready`` (at once), ``slow`` (one replica per read), ``stuck:<Reason>`` (a new pod waits with
that reason, with an event), ``oom`` (a new pod's last state is OOMKilled), ``unschedulable``,
``deadline`` (ProgressDeadlineExceeded).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Path = tuple[str, ...]
ServiceHandler = Callable[[str, str, Any], tuple[int, Any]]

PLURALS = {
    "deployments": "Deployment", "replicasets": "ReplicaSet", "services": "Service", "secrets": "Secret",
    "configmaps": "ConfigMap", "pods": "Pod", "events": "Event", "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
GROUP_VERSION = {
    "Deployment": "apps/v1", "ReplicaSet": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
}
SYSTEM_FIELDS = {("metadata", "name"), ("metadata", "namespace"), ("apiVersion",), ("kind",)}


def _leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    if isinstance(value, dict) and value:
        found: dict[Path, Any] = {}
        for key, item in value.items():
            found.update(_leaves(item, (*prefix, key)))
        return found
    return {prefix: value}


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def _delete(obj: dict[str, Any], path: Path) -> None:
    parents = []
    for key in path[:-1]:
        if not isinstance(obj.get(key), dict):
            return
        parents.append((obj, key))
        obj = obj[key]
    obj.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop maps left empty
        if parent[key] == {}:
            del parent[key]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}
    return web.json_response(body, status=code)


class FakeKubernetes:
    """Start with ``start()`` (a thread with its own loop); ``url`` is where the API answers."""

    def __init__(self, namespaces: tuple[str, ...] = ("default",)) -> None:
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name)
        self.managers: dict[tuple[str, str, str], dict[str, set[Path]]] = {}
        self.mode: dict[str, str] = {}  # Deployment name -> how its rollouts go
        self.service_handler: ServiceHandler = lambda _service, _path, _body: (503, {"message": "no endpoints"})
        # how a new pod of a Deployment comes up: None (ready) or the waiting reason it is stuck in
        self.pod_check: Callable[[dict[str, Any]], str | None] = lambda _deployment: None
        self.requests: list[tuple[str, str]] = []
        self.served: set[tuple[str, str]] = set()  # (Deployment, template digest) that rolled out
        self.lock = threading.RLock()
        self._version = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeKubernetes:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-kubernetes")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop serving (a test may stop it early to see an unreachable API); stopping twice is fine."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)

    def kubeconfig(self, path: Any, context: str = "fake") -> Any:
        """A kubeconfig file whose context ``context`` points at this server."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
        }
        path.write_text(json.dumps(config))
        return path

    # -- what tests look at and change ------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found else None

    def names(self, kind: str | None = None) -> list[str]:
        with self.lock:
            return sorted(f"{k}/{n}" for (k, _ns, n) in self.objects if kind is None or k == kind)

    def owners(self, kind: str, name: str, namespace: str = "default") -> dict[str, set[Path]]:
        with self.lock:
            return copy.deepcopy(self.managers.get((kind, namespace, name), {}))

    def delete_by_hand(self, kind: str, name: str, namespace: str = "default") -> None:
        with self.lock:
            self._remove((kind, namespace, name))

    def patch_by_hand(self, kind: str, name: str, patch: dict[str, Any], manager: str = "kubectl", namespace: str = "default") -> None:
        with self.lock:
            self._merge_patch((kind, namespace, name), patch, manager)

    def event(self, pod: str, reason: str, message: str, namespace: str = "default") -> None:
        with self.lock:
            name = f"{pod}.{uuid.uuid4().hex[:8]}"
            self.objects[("Event", namespace, name)] = {
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace,
                                                                  "creationTimestamp": _now()},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                "reason": reason, "message": message, "type": "Warning", "lastTimestamp": _now(),
            }

    # -- HTTP -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer fake-token":
            return _status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        self.requests.append((request.method, request.path_qs))
        body = await request.read()
        with self.lock:
            return self._route(request, parts, body)

    def _route(self, request: web.Request, parts: list[str], body: bytes) -> web.Response:
        # /api/v1/namespaces/{ns}[/...] or /apis/{group}/{version}/namespaces/{ns}/...
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
        if len(rest) < 2 or rest[0] != "namespaces":
            return _status(404, "NotFound", f"no route {request.path}")
        namespace = rest[1]
        if len(rest) == 2:
            if namespace in self.namespaces:
                return web.json_response({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": namespace}})
            return _status(404, "NotFound", f'namespaces "{namespace}" not found')
        plural = rest[2]
        if plural == "services" and len(rest) >= 5 and rest[4] == "proxy":
            service = rest[3].partition(":")[0]
            status, answer = self.service_handler(service, "/" + "/".join(rest[5:]), json.loads(body or b"null"))
            return web.json_response(answer, status=status)
        kind = PLURALS.get(plural)
        if kind is None:
            return _status(404, "NotFound", f"the server could not find the requested resource ({plural})")
        if namespace not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{namespace}" not found')
        if len(rest) == 3:
            if request.method != "GET":
                return _status(405, "MethodNotAllowed", request.method)
            return web.json_response(self._list(kind, namespace, request.query))
        key = (kind, namespace, rest[3])
        if request.method == "GET":
            found = self._read(key)
            if key in self.objects and kind == "Deployment":
                self._progress(self.objects[key])  # a slow rollout moves on after each read
            return web.json_response(found) if found else _status(404, "NotFound", f'{plural} "{rest[3]}" not found')
        if request.method == "DELETE":
            if key not in self.objects:
                return _status(404, "NotFound", f'{plural} "{rest[3]}" not found')
            self._remove(key)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            document = json.loads(body)
            manager = request.query.get("fieldManager", "")
            if content_type.startswith("application/apply-patch"):
                if not manager:
                    return _status(422, "Invalid", "fieldManager is required for apply requests")
                if document.get("kind") != kind or document.get("metadata", {}).get("name") != rest[3]:
                    return _status(400, "BadRequest", "the kind and name of the body must match the URL")
                dry_run = request.query.get("dryRun") == "All"
                return self._apply(key, document, manager, request.query.get("force") == "true", dry_run)
            if content_type.startswith("application/merge-patch"):
                if key not in self.objects:
                    return _status(404, "NotFound", f'{plural} "{rest[3]}" not found')
                self._merge_patch(key, document, manager or "kubectl")
                return web.json_response(self._read(key))
            return _status(415, "UnsupportedMediaType", content_type)
        return _status(405, "MethodNotAllowed", request.method)

    # -- the store --------------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _list(self, kind: str, namespace: str, query: Any) -> dict[str, Any]:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        items = []
        for (k, ns, _name), obj in sorted(self.objects.items()):
            if k != kind or ns != namespace:
                continue
            if labels and not _matches(obj.get("metadata", {}).get("labels") or {}, labels):
                continue
            if fields and not all(
                str(_get(obj, tuple(term.partition("=")[0].split(".")))) == term.partition("=")[2]
                for term in fields.split(",")
            ):
                continue
            items.append(copy.deepcopy(obj))
        return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION.get(kind, "v1"), "metadata": {}, "items": items}

    def _read(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        obj = self.objects.get(key)
        return copy.deepcopy(obj) if obj is not None else None

    def _apply(self, key: tuple[str, str, str], config: dict[str, Any], manager: str, force: bool, dry_run: bool) -> web.Response:
        current = self.objects.get(key)
        obj = copy.deepcopy(current) if current else {
            "apiVersion": config["apiVersion"], "kind": key[0],
            "metadata": {"name": key[2], "namespace": key[1], "uid": str(uuid.uuid4()), "creationTimestamp": _now()},
        }
        owners = copy.deepcopy(self.managers.get(key, {}))
        wanted = {p: v for p, v in _leaves(config).items() if p not in SYSTEM_FIELDS}
        conflicts = sorted(
            (other, p) for other, paths in owners.items() if other != manager for p in paths
            if p in wanted and _get(obj, p) != wanted[p]
        )
        if conflicts and not force:
            listed = "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts)
            return _status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {listed}")
        for other, path in conflicts:
            owners[other].discard(path)
        mine = owners.get(manager, set())
        for path in mine - set(wanted):
            if not any(path in paths for other, paths in owners.items() if other != manager):
                _delete(obj, path)
        for path, value in wanted.items():
            _set(obj, path, value)
        owners[manager] = set(wanted)
        if dry_run:
            return web.json_response(obj)
        self._store(key, obj, current)
        self.managers[key] = owners
        return web.json_response(self._read(key))

    def _merge_patch(self, key: tuple[str, str, str], patch: dict[str, Any], manager: str) -> None:
        current = self.objects[key]
        obj = copy.deepcopy(current)
        _merge(obj, patch)
        owners = self.managers.setdefault(key, {})
        for path in _leaves(patch):
            for paths in owners.values():
                paths.discard(path)
            owners.setdefault(manager, set()).add(path)
        self._store(key, obj, current)

    def _store(self, key: tuple[str, str, str], obj: dict[str, Any], before: dict[str, Any] | None) -> None:
        metadata = obj["metadata"]
        generation = int(metadata.get("generation") or 0)
        if before is None or obj.get("spec") != before.get("spec"):
            metadata["generation"] = generation + 1
        changed = before is None or {k: v for k, v in obj.items() if k != "status"} != {
            k: v for k, v in before.items() if k != "status"
        }
        if changed:
            metadata["resourceVersion"] = self._next_version()
        self.objects[key] = obj
        if key[0] == "Deployment" and (before is None or obj.get("spec") != before.get("spec")):
            self._rollout(obj, before)

    def _remove(self, key: tuple[str, str, str]) -> None:
        obj = self.objects.pop(key, None)
        self.managers.pop(key, None)
        if obj is not None and key[0] == "Deployment":
            selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
            for pod_key in [k for k, o in self.objects.items() if k[0] == "Pod" and k[1] == key[1]]:
                labels = self.objects[pod_key]["metadata"].get("labels") or {}
                if selector.items() <= labels.items():
                    self.objects.pop(pod_key)

    # -- the deployment controller ---------------------------------------------------------------

    def _rollout(self, obj: dict[str, Any], before: dict[str, Any] | None) -> None:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        spec = obj["spec"]
        wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        old = int(((before or {}).get("status") or {}).get("availableReplicas") or 0)
        template = spec.get("template") or {}
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        mode = self.mode.get(name, "ready")
        if mode == "ready" and (stuck := self.pod_check(obj)) is not None:
            mode = f"stuck:{stuck}"
        if (name, digest) in self.served:
            mode = "ready"  # a template that served before (a rollback): its ReplicaSet is still up
        generation = obj["metadata"]["generation"]
        for key in [k for k, o in self.objects.items() if k[0] == "Pod" and o["metadata"].get("ownerDeployment") == name]:
            if self.objects[key]["metadata"]["labels"].get("pod-template-hash") != digest or mode == "ready":
                self.objects.pop(key)
        status: dict[str, Any] = {"observedGeneration": generation}
        available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        if mode in ("ready", "slow"):
            done = wanted if mode == "ready" else 0
            status.update(replicas=max(wanted, old) if done < wanted else wanted, updatedReplicas=done,
                          readyReplicas=done if mode == "ready" else old, availableReplicas=done if mode == "ready" else old)
            status["conditions"] = [available, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
            obj["status"] = status
            obj["metadata"]["fakeTarget"] = wanted
            for index in range(wanted if mode == "ready" else 0):
                self._pod(obj, digest, index, ready=True)
            self.served.add((name, digest))
            return
        status.update(replicas=old + 1, updatedReplicas=1, readyReplicas=old, availableReplicas=old, unavailableReplicas=1)
        progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
        if mode == "deadline":
            progressing = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{name}-{digest}" has timed out progressing.'}
        status["conditions"] = [available, progressing]
        obj["status"] = status
        pod = self._pod(obj, digest, 0, ready=False)
        pod_name = pod["metadata"]["name"]
        if mode.startswith("stuck:"):
            reason = mode.partition(":")[2]
            pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": f"{reason} for the test"}}
            if "Image" in reason:
                self.event(pod_name, "Failed", f'Failed to pull image "{template["spec"]["containers"][0]["image"]}": not found', namespace)
            else:
                self.event(pod_name, "BackOff", "Back-off restarting failed container replica", namespace)
        elif mode == "oom":
            container = pod["status"]["containerStatuses"][0]
            container["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}
            container["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
            container["restartCount"] = 3
            self.event(pod_name, "BackOff", "Back-off restarting failed container replica", namespace)
        elif mode == "unschedulable":
            pod["status"]["phase"] = "Pending"
            pod["status"]["containerStatuses"] = []
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
            self.event(pod_name, "FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", namespace)

    def _progress(self, obj: dict[str, Any]) -> None:
        """``slow`` rollouts: one more replica updated and available per read."""
        if self.mode.get(obj["metadata"]["name"]) != "slow":
            return
        status, wanted = obj.get("status") or {}, int(obj["metadata"].get("fakeTarget") or 0)
        done = min(wanted, int(status.get("updatedReplicas") or 0) + 1)
        status.update(updatedReplicas=done, availableReplicas=done, readyReplicas=done, replicas=wanted)

    def _pod(self, deployment: dict[str, Any], digest: str, index: int, ready: bool) -> dict[str, Any]:
        name = f"{deployment['metadata']['name']}-{digest}-{index}"
        namespace = deployment["metadata"]["namespace"]
        labels = {**((deployment["spec"].get("template") or {}).get("metadata") or {}).get("labels", {}), "pod-template-hash": digest}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerDeployment": deployment["metadata"]["name"]},
            "status": {
                "phase": "Running" if ready else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"name": "replica", "ready": ready, "restartCount": 0,
                                       "state": {"running": {}} if ready else {"waiting": {"reason": "ContainerCreating"}}}],
            },
        }
        self.objects[("Pod", namespace, name)] = pod
        return pod


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
