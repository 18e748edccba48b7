"""The managed server's command line keeps secrets in its environment (cmlplan.registry.server)."""

from __future__ import annotations

from pathlib import Path

from cmlplan.registry.server import server_command, server_uri, sqlalchemy_dsn


def test_sqlite_and_folder_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    attributes = {
        "host": "127.0.0.1", "port": 5001,
        "backend_store": {"type": "sqlite", "path": ".cmlplan/registry/main/mlflow.db"},
        "artifacts": {"type": "folder", "path": "artifacts"},
    }
    argv, env = server_command(attributes, tmp_path, {})
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/.cmlplan/registry/main/mlflow.db"
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert (tmp_path / "artifacts").is_dir() and env == {}
    assert server_uri(attributes) == "http://127.0.0.1:5001"


def test_postgresql_dsn_and_s3_keys_never_reach_the_command_line(tmp_path: Path) -> None:
    attributes = {
        "host": "0.0.0.0", "port": 5002,
        "backend_store": {"type": "postgresql", "dsn_ref": "${env:DSN}"},
        "artifacts": {"type": "s3", "bucket": "s3://models", "endpoint_url": "http://127.0.0.1:9878"},
    }
    secrets = {
        "backend_store.dsn": "postgresql://u:pw-secret@127.0.0.1/mlflow",
        "artifacts.access_key_id": "AKIA-secret",
        "artifacts.secret_access_key": "sk-secret",
    }
    argv, env = server_command(attributes, tmp_path, secrets)
    # the values, not the word: a checkout's path may well contain "secret"
    assert not any(value in part for part in argv for value in ("pw-secret", "AKIA-secret", "sk-secret"))
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("u:pw-secret@127.0.0.1/mlflow")
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA-secret" and env["AWS_SECRET_ACCESS_KEY"] == "sk-secret"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9878"
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://models"
    assert server_uri(attributes) == "http://127.0.0.1:5002"


def test_dsn_gets_a_driver_sqlalchemy_has() -> None:
    converted = sqlalchemy_dsn("postgres://u@h/db")
    assert converted in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db")
