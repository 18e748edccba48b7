"""Every object the kubernetes provider generates, checked offline: the official schemas (strict,
two Kubernetes versions), what the schemas miss (DNS names, selectors, ports, immutable selectors),
and golden YAML for iris and add-numbers (regenerate with CMLPLAN_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import copy
import io
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from k8sexamples import kubernetes_copy, rendered
from ruamel.yaml import YAML

from cmlplan.providers.kubernetes import names
from cmlplan.providers.kubernetes import objects as ob

VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
GOLDEN = Path(__file__).parent / "golden"
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

BASE = {
    "model": "model.iris/petal-width", "project": "iris", "name": "petal-width", "build": 1,
    "build_hash": "abc", "file": "predict.py", "function": "predict", "replicas": 3, "cpu": 1.0,
    "memory": 1024**3, "request_timeout": 30.0, "env": {"MODE": "fast"}, "env_fingerprints": {},
    "stopped": False, "authentication": True, "examples": [], "deployment_id": 4,
}
TARGET = ob.Target(workspace="ws", namespace="ml", image_registry="localhost:5000")


def variants() -> dict[str, list[dict[str, Any]]]:
    """Objects for every shape of deployment the specs allow, plus the proxy."""
    secret_env = {**BASE, "env": {"MODE": "fast", "TOKEN": "${env:TOKEN}"}, "env_fingerprints": {"TOKEN": "f1"}}
    long_names = {**BASE, "project": "p" * 63, "name": "m" * 63, "model": f"model.{'p' * 63}/{'m' * 63}"}
    return {
        "plain": ob.model_objects(TARGET, "deployment.iris/petal-width", BASE, {}),
        "secret env": ob.model_objects(TARGET, "deployment.iris/petal-width", secret_env, {"env.TOKEN": "s3cret"}),
        "gpus": ob.model_objects(TARGET, "deployment.iris/petal-width", {**BASE, "gpus": 2, "cpu": 0.5}, {}),
        "autoscale in flight": ob.model_objects(
            TARGET, "deployment.iris/petal-width", {**BASE, "autoscale": {"min": 1, "max": 5, "target_in_flight": 0.8}}, {}
        ),
        "autoscale cpu": ob.model_objects(
            TARGET, "deployment.iris/petal-width", {**BASE, "autoscale": {"min": 2, "max": 4, "cpu": 70}}, {}
        ),
        "stopped": ob.model_objects(TARGET, "deployment.iris/petal-width", {**BASE, "stopped": True}, {}),
        "long names": ob.model_objects(TARGET, f"deployment.{'p' * 63}/{'m' * 63}", long_names, {}),
        "proxy": ob.proxy_objects(
            TARGET, "proxy.default",
            {"host": "127.0.0.1", "port": 8787, "replicas": 2, "busy_timeout": 30.0, "request_timeout": 30.0,
             "max_request_bytes": 5_000_000}, "cmlplan/proxy:1", b'{"version": 1}',
        ),
        "proxy with a metrics store": ob.proxy_objects(
            TARGET, "proxy.default",
            {"host": "127.0.0.1", "port": 8787, "replicas": 2, "busy_timeout": 30.0, "request_timeout": 30.0,
             "max_request_bytes": 5_000_000, "metrics_store": {"dsn_ref": "${env:DSN}", "dsn_fingerprint": "f1"}},
            "cmlplan/proxy:1", b'{"version": 1}', "postgresql://u:s3cret@db:5432/metrics",
        ),
    }


def every_object() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"{case}: {ob.ref(m)}", m) for case, manifests in variants().items() for m in manifests]
    for example in ("iris", "add-numbers"):
        found += [(f"{example}: {ob.ref(m)}", m) for m in _example_objects(example)]
    return found


_EXAMPLES: dict[str, list[dict[str, Any]]] = {}


def _example_objects(example: str) -> list[dict[str, Any]]:
    if example not in _EXAMPLES:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            _EXAMPLES[example] = rendered(kubernetes_copy(example, Path(scratch)))[1]
    return _EXAMPLES[example]


OBJECTS = every_object()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("case", "manifest"), OBJECTS, ids=[c for c, _ in OBJECTS])
def test_matches_the_official_schema_strictly(case: str, manifest: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize(("case", "manifest"), OBJECTS, ids=[c for c, _ in OBJECTS])
def test_what_the_schemas_miss(case: str, manifest: dict[str, Any]) -> None:
    metadata = manifest["metadata"]
    pattern = DNS_1035_LABEL if manifest["kind"] == "Service" else DNS_1123_LABEL
    assert pattern.match(metadata["name"]) and len(metadata["name"]) <= 63, metadata["name"]
    for key, value in metadata.get("labels", {}).items():
        assert LABEL_KEY.match(key), key
        assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    assert metadata["labels"][names.LABEL_MANAGED_BY] == "cmlplan"
    assert metadata["labels"][names.LABEL_WORKSPACE]
    assert metadata["annotations"][names.ANNOTATION_ADDRESS].split(".")[0] in ("deployment", "proxy", "routes")
    spec = manifest.get("spec", {})
    if manifest["kind"] == "Deployment":
        selector = spec["selector"]["matchLabels"]
        template_labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items(), "the selector must match the pod template"
        assert names.LABEL_BUILD not in selector, "a new build must not change the (immutable) selector"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        for container in spec["template"]["spec"]["containers"]:
            assert DNS_1123_LABEL.match(container["name"])
            for port in container["ports"]:
                assert 1 <= port["containerPort"] <= 65535
                assert len(port["name"]) <= 15
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    if manifest["kind"] == "Service":
        ports = spec["ports"]
        assert len({p["port"] for p in ports}) == len(ports)
        assert len({p["name"] for p in ports}) == len(ports)
        for port in ports:
            assert 1 <= port["port"] <= 65535 and len(port["name"]) <= 15


def test_selectors_stay_the_same_on_every_update() -> None:
    """Build, replicas, resources, env, GPUs and autoscaling change; the selectors must not."""
    def selectors(attributes: dict[str, Any]) -> dict[str, Any]:
        found = {}
        for manifest in ob.model_objects(TARGET, "deployment.iris/petal-width", attributes, {}):
            if manifest["kind"] == "Deployment":
                found["deployment"] = manifest["spec"]["selector"]
            if manifest["kind"] == "Service":
                found["service"] = manifest["spec"]["selector"]
        return found

    before = selectors(BASE)
    for change in (
        {"build": 2, "build_hash": "def"}, {"replicas": 7}, {"cpu": 2.5, "memory": 3 * 1024**3},
        {"env": {"MODE": "slow"}}, {"gpus": 1}, {"autoscale": {"min": 1, "max": 3, "cpu": 50}}, {"stopped": True},
    ):
        assert selectors({**BASE, **change}) == before, change


def test_a_new_build_changes_the_pod_template() -> None:
    first = ob.model_objects(TARGET, "deployment.iris/petal-width", BASE, {})[0]
    second = ob.model_objects(TARGET, "deployment.iris/petal-width", {**BASE, "build": 2}, {})[0]
    assert first["spec"]["template"] != second["spec"]["template"]
    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost:5000/cmlplan/ws-iris-petal-width:2"


def test_secret_env_values_are_referenced_never_inlined() -> None:
    manifests = variants()["secret env"]
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODE"] == {"name": "MODE", "value": "fast"}
    assert env["TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "TOKEN"
    assert "s3cret" not in repr(deployment)
    secret = next(m for m in manifests if m["kind"] == "Secret")
    assert secret["data"] == {"TOKEN": "czNjcmV0"}


def test_the_metrics_dsn_reaches_the_proxy_pods_from_a_secret_only() -> None:
    manifests = variants()["proxy with a metrics store"]
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    (env,) = template["spec"]["containers"][0]["env"]
    secret_name = names.metrics_secret("ws")
    assert env == {"name": "CMLPLAN_METRICS_DSN", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "dsn"}}}
    assert "s3cret" not in repr(deployment)
    (secret,) = [m for m in manifests if m["kind"] == "Secret" and m["metadata"]["name"] == secret_name]
    assert secret["data"] == {"dsn": "cG9zdGdyZXNxbDovL3U6czNjcmV0QGRiOjU0MzIvbWV0cmljcw=="}
    plain = next(m for m in variants()["proxy"] if m["kind"] == "Deployment")
    assert "env" not in plain["spec"]["template"]["spec"]["containers"][0]
    assert names.ANNOTATION_ENV not in plain["spec"]["template"]["metadata"]["annotations"]
    rotated = ob.proxy_objects(
        TARGET, "proxy.default",
        {"port": 8787, "replicas": 2, "metrics_store": {"dsn_ref": "${env:DSN}", "dsn_fingerprint": "f2"}},
        "cmlplan/proxy:1", b"{}", "postgresql://u:n3w@db:5432/metrics",
    )
    annotation = next(m for m in rotated if m["kind"] == "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotation[names.ANNOTATION_ENV] != template["metadata"]["annotations"][names.ANNOTATION_ENV]  # rolls


def test_gpus_autoscale_and_stopped() -> None:
    cases = variants()
    limits = cases["gpus"][0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "2"}
    hpa = cases["autoscale in flight"][-1]
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "800m"
    assert "replicas" not in cases["autoscale in flight"][0]["spec"], "the HPA owns replicas"
    assert cases["autoscale cpu"][-1]["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert cases["stopped"][0]["spec"]["replicas"] == 0
    assert ob.slot_urls(TARGET, {**BASE, "stopped": True}) == []
    slots = ob.slot_urls(TARGET, BASE)
    assert [s["url"] for s in slots] == [f"http://cmlplan-ws-iris-petal-width.ml.svc:{8080 + i}" for i in range(3)]


def test_long_names_stay_distinct_and_bounded() -> None:
    a = names.model_object("w" * 63, "p" * 63, "a" * 63)
    b = names.model_object("w" * 63, "p" * 63, "b" * 63)
    assert a != b and len(a) <= 63 and len(b) <= 63 and DNS_1035_LABEL.match(a)


def _yaml(manifests: list[dict[str, Any]]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump_all(copy.deepcopy(manifests), out)
    return out.getvalue()


@pytest.mark.parametrize("example", ["iris", "add-numbers"])
def test_golden_objects(example: str) -> None:
    text = _yaml(_example_objects(example))
    path = GOLDEN / f"{example}.yaml"
    if os.environ.get("CMLPLAN_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with CMLPLAN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs: review, then regenerate with CMLPLAN_UPDATE_GOLDEN=1"


def test_the_docs_show_the_iris_objects() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "kubernetes.md").read_text()
    assert (GOLDEN / "iris.yaml").read_text() in docs, "docs/kubernetes.md: paste golden/iris.yaml into its last section"
