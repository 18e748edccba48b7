"""The managed registry's ``mlflow server`` command line and environment, from its attributes.

Secrets (a PostgreSQL DSN, S3 keys) go in the environment, never on the command line, which every
user of the machine can read; mlflow reads ``MLFLOW_BACKEND_STORE_URI`` itself, and the S3 client
reads the AWS variables.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def server_command(
    attributes: Mapping[str, Any], spec_dir: Path, secrets: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` running the registry ``attributes`` describe; paths are relative to ``spec_dir``."""
    argv = [sys.executable, "-m", "mlflow", "server", "--host", str(attributes["host"]), "--port", str(attributes["port"])]
    argv += ["--workers", "1", "--serve-artifacts"]
    env: dict[str, str] = {}
    backend = attributes.get("backend_store") or {}
    if backend.get("type") == "postgresql":
        env["MLFLOW_BACKEND_STORE_URI"] = sqlalchemy_dsn(secrets["backend_store.dsn"])
    else:
        path = store_path(spec_dir, str(backend.get("path")))
        path.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--backend-store-uri", f"sqlite:///{path}"]
    artifacts = attributes.get("artifacts") or {}
    if artifacts.get("type") == "s3":
        argv += ["--artifacts-destination", str(artifacts["bucket"])]
        if artifacts.get("endpoint_url"):
            env["MLFLOW_S3_ENDPOINT_URL"] = str(artifacts["endpoint_url"])
        for key, variable in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
            if f"artifacts.{key}" in secrets:
                env[variable] = secrets[f"artifacts.{key}"]
    else:
        folder = store_path(spec_dir, str(artifacts.get("path")))
        folder.mkdir(parents=True, exist_ok=True)
        argv += ["--artifacts-destination", str(folder)]
    return argv, env


def store_path(spec_dir: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (spec_dir / candidate).resolve()


def sqlalchemy_dsn(dsn: str, psycopg2: bool | None = None) -> str:
    """A ``postgresql://`` DSN for SQLAlchemy: with the psycopg (3) driver unless psycopg2 is there
    (``psycopg2``: whether it is, where the server runs; this machine's python when None)."""
    if dsn.startswith("postgres://"):
        dsn = "postgresql://" + dsn.removeprefix("postgres://")
    if psycopg2 is None:
        psycopg2 = importlib.util.find_spec("psycopg2") is not None
    if dsn.startswith("postgresql://") and not psycopg2:
        return "postgresql+psycopg://" + dsn.removeprefix("postgresql://")
    return dsn


def start_timeout() -> float:
    """How long apply waits for a managed server to answer (``CMLPLAN_REGISTRY_START_TIMEOUT``, 180 s)."""
    try:
        value = float(os.environ.get("CMLPLAN_REGISTRY_START_TIMEOUT", ""))
    except ValueError:
        return 180.0
    return value if value > 0 else 180.0


def server_uri(attributes: Mapping[str, Any]) -> str:
    """Where this machine reaches the server (a wildcard bind is reached on loopback)."""
    host = str(attributes.get("host") or "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{attributes['port']}"
