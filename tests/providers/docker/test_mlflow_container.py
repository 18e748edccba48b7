"""The managed registry's container on docker, as data: secrets only in its environment, data on
bind mounts, reachable by its name on the workspace network (no engine needed)."""

from __future__ import annotations

from pathlib import Path

from cmlplan.providers.base import PlanRequest
from cmlplan.providers.docker.mlflow_container import MlflowContainers, server_container
from cmlplan.values import UNKNOWN

SECRETS = {
    "backend_store.dsn": "postgresql://u:pw-secret@host.docker.internal:5432/mlflow",
    "artifacts.access_key_id": "AKIA-secret",
    "artifacts.secret_access_key": "sk-secret",
}


def test_sqlite_and_folder_are_bind_mounts_under_the_spec_folder(tmp_path: Path) -> None:
    attributes = {
        "name": "main", "host": "127.0.0.1", "port": 5001,
        "backend_store": {"type": "sqlite", "path": ".cmlplan/registry/main/mlflow.db"},
        "artifacts": {"type": "folder", "path": ".cmlplan/registry/main/artifacts"},
    }
    spec = server_container("ws", attributes, tmp_path, {}, "cmlplan/mlflow:x")
    assert spec.name == "cmlplan-ws-registry-main"
    assert spec.volumes == {
        str(tmp_path / ".cmlplan/registry/main"): {"bind": "/data/backend", "mode": "rw"},
        str(tmp_path / ".cmlplan/registry/main/artifacts"): {"bind": "/data/artifacts", "mode": "rw"},
    }
    command = spec.command
    assert command[command.index("--backend-store-uri") + 1] == "sqlite:////data/backend/mlflow.db"
    assert command[command.index("--artifacts-destination") + 1] == "/data/artifacts"
    assert spec.ports == {"5000/tcp": ("127.0.0.1", 5001)}
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"cmlplan-ws-registry-main", "cmlplan-ws-registry-main:*", "127.0.0.1:*"} <= set(allowed)
    assert spec.labels == {
        "cmlplan.workspace": "ws", "cmlplan.address": "registry.main", "cmlplan.role": "registry",
        "cmlplan.image": "cmlplan/mlflow:x",
    }


def test_a_dsn_and_s3_keys_reach_only_the_environment(tmp_path: Path) -> None:
    attributes = {
        "name": "main", "host": "10.1.2.3", "port": 5002,
        "backend_store": {"type": "postgresql", "dsn_ref": "${env:DSN}", "dsn_fingerprint": "f"},
        "artifacts": {"type": "s3", "bucket": "s3://models", "endpoint_url": "http://host.docker.internal:9878"},
    }
    spec = server_container("ws", attributes, tmp_path, SECRETS, "img")
    visible = " ".join([*spec.command, *spec.labels.values(), *spec.volumes, str(spec.ports)])
    assert "secret" not in visible
    assert spec.environment["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg://u:pw-secret@host.docker.internal:5432/mlflow"
    assert spec.environment["AWS_ACCESS_KEY_ID"] == "AKIA-secret"
    assert spec.environment["AWS_SECRET_ACCESS_KEY"] == "sk-secret"
    assert spec.environment["MLFLOW_S3_ENDPOINT_URL"] == "http://host.docker.internal:9878"
    assert spec.volumes == {} and "--backend-store-uri" not in spec.command
    assert spec.command[spec.command.index("--artifacts-destination") + 1] == "s3://models"
    assert "10.1.2.3:*" in spec.command[spec.command.index("--allowed-hosts") + 1]


def test_plan_restarts_a_registry_that_does_not_answer_or_changed_by_hand(tmp_path: Path) -> None:
    class Runtime:
        workspace = "ws"

    registries = MlflowContainers(Runtime(), tmp_path, "salt", "base:1")  # type: ignore[arg-type]
    desired = {"mode": "managed", "name": "main", "host": "127.0.0.1", "port": 5000}
    process = {"name": "cmlplan-ws-registry-main", "container_id": "abc", "image_id": "i", "env_hash": "e"}

    def planned(processes: object) -> object:
        current = {**desired, "processes": processes}
        result = registries.plan(PlanRequest(address="registry.main", kind="registry", current=current, desired=desired))
        assert result.planned is not None and result.computed == ("processes",)
        assert result.planned["uri"] == "http://127.0.0.1:5000"
        assert result.planned["network_uri"] == "http://cmlplan-ws-registry-main:5000"
        assert result.planned["image"].startswith("cmlplan/mlflow:")
        return result.planned["processes"]

    assert planned([process]) == [process]
    assert planned([{**process, "health": "does not answer (timed out)"}]) == UNKNOWN
    assert planned([]) == UNKNOWN
