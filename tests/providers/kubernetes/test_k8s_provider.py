"""The kubernetes provider against the fake API on loopback, driven by the real client through the
CLI: create, re-apply is a no-op, drift (scaled, edited, deleted by hand), conflicts and force,
delete leaves nothing, leftovers, autoscaling."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fakeapi import FakeKubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))
from test_commands import cmlplan  # noqa: E402

MODEL_OBJECT = "cmlplan-add-numbers-demo-numbers-add"
PROXY_OBJECT = "cmlplan-add-numbers-demo-proxy"
ROUTES = "cmlplan-add-numbers-demo-routes"
DEPLOYMENT = "deployment.numbers/add"


def run(directory: Path, *args: str) -> tuple[int, str]:
    outcome = cmlplan(*args, "-C", str(directory))
    return outcome.code, outcome.out + outcome.err


def apply(directory: Path) -> str:
    code, output = run(directory, "apply", "-auto-approve")
    assert code == 0, output
    return output


def actions(directory: Path) -> dict[str, str]:
    code, output = run(directory, "plan", "--json")
    assert code == 0, output
    return {c["address"]: c["action"] for c in json.loads(output)["resource_changes"] if c["action"] != "no-op"}


def routes(cluster: FakeKubernetes) -> dict[str, Any]:
    secret = cluster.get("Secret", ROUTES, "ml")
    assert secret is not None
    return json.loads(base64.b64decode(secret["data"]["routes.json"]))


def test_create_then_reapply_is_a_no_op(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    output = apply(k8s_ws)
    assert "Apply complete!" in output
    assert cluster.names("Deployment") == [f"Deployment/{MODEL_OBJECT}", f"Deployment/{PROXY_OBJECT}"]
    assert cluster.names("Service") == [f"Service/{MODEL_OBJECT}", f"Service/{PROXY_OBJECT}"]
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost:5000/cmlplan/add-numbers-demo-numbers-add:1"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cmlplan"
    assert set(cluster.owners("Deployment", MODEL_OBJECT, "ml")) == {"cmlplan"}
    proxy = cluster.get("Deployment", PROXY_OBJECT, "ml")
    assert proxy is not None and proxy["spec"]["replicas"] == 2, "2 proxy pods by default on kubernetes"
    table = routes(cluster)
    (entry,) = table["models"].values()
    assert entry["address"] == "model.numbers/add"
    assert [r["url"] for r in entry["replicas"]] == [
        f"http://{MODEL_OBJECT}.ml.svc:8080", f"http://{MODEL_OBJECT}.ml.svc:8081",
    ]
    assert ("POST", f"/api/v1/namespaces/ml/services/{MODEL_OBJECT}:8080/proxy/predict") in cluster.requests
    writes = [r for r in cluster.requests if r[0] in ("PATCH", "DELETE", "POST")]
    assert all("fieldManager=cmlplan" in path for method, path in writes if method == "PATCH")
    assert all("force=true" not in path for _method, path in writes), "force only when asked"
    assert any("fieldManager=cmlplan-routes" in path for _method, path in writes), "the proxy rolls to new routes"

    code, text = run(k8s_ws, "plan")
    assert "No changes" in text, text
    before = len([r for r in cluster.requests if r[0] != "GET"])
    output = apply(k8s_ws)
    assert "No changes" in output or "0 added, 0 changed, 0 destroyed" in output, output
    assert len([r for r in cluster.requests if r[0] != "GET"]) == before, "a no-op apply writes nothing"


def test_scaled_by_hand_is_drift_and_conflicts_unless_forced(
    k8s_ws: Path, cluster: FakeKubernetes, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(k8s_ws)
    cluster.patch_by_hand("Deployment", MODEL_OBJECT, {"spec": {"replicas": 5}}, manager="kubectl", namespace="ml")
    assert actions(k8s_ws) == {DEPLOYMENT: "update"}
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert 'conflict with "kubectl": .spec.replicas' in output and "force_conflicts" in output
    assert "Traceback" not in output
    monkeypatch.setenv("CMLPLAN_K8S_FORCE_CONFLICTS", "1")
    apply(k8s_ws)
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    monkeypatch.delenv("CMLPLAN_K8S_FORCE_CONFLICTS")
    assert actions(k8s_ws) == {}


def test_edited_and_deleted_by_hand_are_drift_and_apply_repairs(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    cluster.delete_by_hand("Service", MODEL_OBJECT, "ml")
    assert actions(k8s_ws) == {DEPLOYMENT: "update"}
    apply(k8s_ws)
    assert cluster.get("Service", MODEL_OBJECT, "ml") is not None
    cluster.delete_by_hand("Deployment", MODEL_OBJECT, "ml")
    assert actions(k8s_ws) == {DEPLOYMENT: "create"}
    apply(k8s_ws)
    assert cluster.get("Deployment", MODEL_OBJECT, "ml") is not None
    assert actions(k8s_ws) == {}


def test_destroy_leaves_nothing(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    code, output = run(k8s_ws, "destroy", "-auto-approve")
    assert code == 0, output
    left = [n for n in cluster.names() if not n.startswith("Event/")]
    assert left == [], left


def test_objects_no_state_records_are_removed(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    leftover = cluster.get("Service", MODEL_OBJECT, "ml")
    assert leftover is not None
    leftover["metadata"]["name"] = "cmlplan-add-numbers-demo-numbers-old"
    cluster.objects[("Service", "ml", "cmlplan-add-numbers-demo-numbers-old")] = leftover
    foreign = json.loads(json.dumps(leftover))
    foreign["metadata"]["name"] = "someone-elses"
    foreign["metadata"]["labels"]["cmlplan.dev/workspace"] = "another-workspace"
    cluster.objects[("Service", "ml", "someone-elses")] = foreign
    run(k8s_ws, "destroy", "-auto-approve")
    assert cluster.names("Service") == ["Service/someone-elses"]


def test_a_missing_namespace_is_one_line(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    cluster.namespaces.discard("ml")
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "namespace 'ml' does not exist" in output and "Traceback" not in output


def test_autoscaled_replicas_belong_to_the_hpa(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    spec = k8s_ws / "cmlplan.yaml"
    text = spec.read_text()
    spec.write_text(text.replace(
        "deployment: {replicas: 2,", "deployment: {autoscale: {min: 1, max: 4, target_in_flight: 1}, replicas: 2,"
    ))
    apply(k8s_ws)
    hpa = cluster.get("HorizontalPodAutoscaler", MODEL_OBJECT, "ml")
    assert hpa is not None and hpa["spec"]["maxReplicas"] == 4
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None
    assert ("spec", "replicas") not in cluster.owners("Deployment", MODEL_OBJECT, "ml")["cmlplan"]
    assert len(routes(cluster)["models"].popitem()[1]["replicas"]) == 4, "one proxy slot per possible replica"
    cluster.patch_by_hand("Deployment", MODEL_OBJECT, {"spec": {"replicas": 3}}, manager="kube-controller-manager", namespace="ml")
    assert actions(k8s_ws) == {}, "the autoscaler's choice is not drift"
    spec.write_text(text)  # autoscaling off again: the HPA goes, cmlplan sets replicas again
    monkey = dict(CMLPLAN_K8S_FORCE_CONFLICTS="1")
    import os

    os.environ.update(monkey)
    try:
        apply(k8s_ws)
    finally:
        os.environ.pop("CMLPLAN_K8S_FORCE_CONFLICTS")
    assert cluster.get("HorizontalPodAutoscaler", MODEL_OBJECT, "ml") is None
    deployment = cluster.get("Deployment", MODEL_OBJECT, "ml")
    assert deployment is not None and deployment["spec"]["replicas"] == 2


def test_a_lost_local_routes_copy_is_seeded_from_the_cluster(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    before = routes(cluster)
    (k8s_ws / ".cmlplan" / "run" / "routes.json").unlink()
    spec = k8s_ws / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("replicas: 2,", "replicas: 3,"))
    apply(k8s_ws)
    after = routes(cluster)
    assert after["generation"] > before["generation"]
    (entry,) = after["models"].values()
    assert len(entry["replicas"]) == 3
    assert after["api_keys"] == before["api_keys"] and after["projects"] == before["projects"]


def test_iris_applies_with_only_the_provider_line_changed(
    tmp_path: Path, cluster: FakeKubernetes, k8s_provider_factory: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/iris as shipped (namespace default, no registry), the cluster from $KUBECONFIG."""
    from k8sexamples import kubernetes_copy

    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "config", context="whatever-is-current")))
    monkeypatch.setenv("CMLPLAN_K8S_POLL", "0.02")
    cluster.service_handler = lambda _s, _p, body: (200, {"success": True, "response": 1.8 if "petal_length" in body else None})
    directory = kubernetes_copy("iris", tmp_path)
    output = apply(directory)
    assert "Apply complete!" in output
    deployment = cluster.get("Deployment", "cmlplan-iris-demo-iris-petal-width", "default")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cmlplan/iris-demo-iris-petal-width:1"
    assert actions(directory) == {}


def test_an_unknown_context_is_one_line(k8s_ws: Path) -> None:
    spec = k8s_ws / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("context: fake-ctx", "context: nope"))
    code, output = run(k8s_ws, "apply", "-auto-approve")
    assert code != 0
    assert "cannot load the kubeconfig (context 'nope' of " in output and "Traceback" not in output


def test_an_unreachable_api_server_is_one_line(k8s_ws: Path, cluster: FakeKubernetes) -> None:
    apply(k8s_ws)
    cluster.stop()
    code, output = run(k8s_ws, "plan")
    assert code != 0
    assert f"cannot reach the Kubernetes API at {cluster.url}" in output and "Traceback" not in output
    assert "Retrying" not in output, "the client's retry warnings are not for people"


def test_a_workspace_dsn_goes_to_the_proxy_pods_through_a_secret(
    k8s_ws: Path, cluster: FakeKubernetes, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(k8s_ws)
    assert "metrics_store" not in routes(cluster)["proxy"]  # no SQLite beside a read-only Secret
    dsn = "postgresql://metrics:s3cret-k8s@db.ml.svc:5432/metrics"
    monkeypatch.setenv("K8S_METRICS_DSN", dsn)
    spec = k8s_ws / "cmlplan.yaml"
    text = spec.read_text()
    assert "  users: [{name: alice}]\n" in text
    spec.write_text(text.replace("  users: [{name: alice}]\n", "  users: [{name: alice}]\n  metrics: {dsn: '${env:K8S_METRICS_DSN}'}\n", 1))
    output = apply(k8s_ws)
    assert "s3cret" not in output
    secret = cluster.get("Secret", "cmlplan-add-numbers-demo-metrics", "ml")
    assert secret is not None and base64.b64decode(secret["data"]["dsn"]).decode() == dsn
    proxy = cluster.get("Deployment", PROXY_OBJECT, "ml")
    assert proxy is not None
    (env,) = proxy["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env["name"] == "CMLPLAN_METRICS_DSN" and "s3cret" not in json.dumps(proxy)
    assert routes(cluster)["proxy"]["metrics_store"] == {"dsn_env": "CMLPLAN_METRICS_DSN"}
    first = proxy["spec"]["template"]["metadata"]["annotations"]["cmlplan.dev/env-fingerprints"]
    assert actions(k8s_ws) == {}
    monkeypatch.setenv("K8S_METRICS_DSN", dsn.replace("s3cret-k8s", "n3w-k8s"))  # a new password
    assert actions(k8s_ws) == {"proxy.default": "update"}
    apply(k8s_ws)
    proxy = cluster.get("Deployment", PROXY_OBJECT, "ml")
    assert proxy is not None
    assert proxy["spec"]["template"]["metadata"]["annotations"]["cmlplan.dev/env-fingerprints"] != first  # pods roll
    for kind in ("Deployment", "Secret", "Service"):
        for name in cluster.names(kind):
            if kind != "Secret" or not name.endswith("-metrics"):
                assert "n3w-k8s" not in json.dumps(cluster.get(kind, name.split("/", 1)[1], "ml"))
