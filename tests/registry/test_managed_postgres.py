"""A managed registry on PostgreSQL: the DSN is an ${env:} reference, mlflow creates its tables in
that database, and the password is in no state, plan output or process command line."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from cmlplan.providers.local.supervisor import Supervisor
from cmlplan.registry.client import health_problem

pytestmark = pytest.mark.slow

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
SPEC = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: pg-registry}
spec: {provider: local}
---
apiVersion: cmlplan/v1
kind: ModelRegistry
metadata: {name: main}
spec:
  port: PORT
  backend_store: {type: postgresql, dsn: "${env:MLFLOW_TEST_DSN}"}
"""


def test_postgresql_backend_store_keeps_the_password_out_of_state_and_argv(tmp_path: Path, postgres_dsn: str) -> None:
    import psycopg

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "cmlplan.yaml").write_text(SPEC.replace("PORT", str(port)))
    env = {**os.environ, "NO_COLOR": "1", "MLFLOW_TEST_DSN": postgres_dsn}
    password = postgres_dsn.split(":")[2].split("@")[0]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "cmlplan"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=True
        )

    supervisor = Supervisor(tmp_path / ".cmlplan" / "supervisor")
    try:
        applied = cli("apply", "-auto-approve")
        assert health_problem(f"http://127.0.0.1:{port}") is None
        with psycopg.connect(postgres_dsn) as connection:
            tables = {row[0] for row in connection.execute("select tablename from pg_tables where schemaname='public'")}
        assert {"registered_models", "model_versions", "experiments"} <= tables
        state = (tmp_path / ".cmlplan" / "state.json").read_text()
        attributes = json.loads(state)["resources"]["registry.main"]["attributes"]
        assert attributes["backend_store"]["dsn_ref"] == "${env:MLFLOW_TEST_DSN}"
        assert attributes["backend_store"]["dsn_fingerprint"]
        pid = attributes["processes"][0]["pid"]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        for text in (state, applied.stdout, applied.stderr, argv, cli("plan").stdout):
            assert password not in text
        assert cli("plan", "-detailed-exitcode").returncode == 0
    finally:
        with contextlib.suppress(Exception):
            cli("destroy", "-auto-approve")
        with contextlib.suppress(Exception):
            supervisor.shutdown(timeout=60)
