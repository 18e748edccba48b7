"""ModelRegistry and registered sources in the specs: one-line problems, the mlflow hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmlplan.specs import SpecError, load_config

BASE = """\
apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: w}
spec: {users: [{name: alice}]}
---
apiVersion: cmlplan/v1
kind: Project
metadata: {name: p}
spec: {collaborators: {alice: owner}}
---
apiVersion: cmlplan/v1
kind: ModelRegistry
metadata: {name: main}
spec: REGISTRY
---
apiVersion: cmlplan/v1
kind: Model
metadata: {name: m, project: p}
spec:
  source: {registered: REGISTERED}
"""


def _load(tmp_path: Path, registry: str = "{}", registered: str = "{registry: main, name: M, alias: champion}") -> str:
    (tmp_path / "cmlplan.yaml").write_text(BASE.replace("REGISTRY", registry).replace("REGISTERED", registered))
    try:
        load_config(tmp_path)
    except SpecError as exc:
        return str(exc)
    return ""


def test_version_or_alias_loads(tmp_path: Path) -> None:
    assert _load(tmp_path) == ""
    assert _load(tmp_path, registered="{registry: main, name: M, version: 3}") == ""


@pytest.mark.parametrize(
    ("registry", "registered", "expected"),
    [
        ("{}", "{registry: main, name: M}", "give version or alias"),
        ("{}", "{registry: main, name: M, version: 1, alias: a}", "give version or alias"),
        ("{}", "{registry: other, name: M, alias: a}", "'other' is not defined"),
        ("{uri: 'http://x:5000', port: 1}", "{registry: main, name: M, alias: a}", "takes no host, port"),
        ("{backend_store: {type: postgresql, dsn: 'postgresql://u:pw@h/db'}}", "{registry: main, name: M, alias: a}", "${env:NAME}"),
        ("{artifacts: {type: s3, bucket: 's3://b', secret_access_key: plain}}", "{registry: main, name: M, alias: a}", "never the key itself"),
    ],
)
def test_bad_registry_input_is_one_line_naming_the_place(tmp_path: Path, registry: str, registered: str, expected: str) -> None:
    message = _load(tmp_path, registry, registered)
    assert expected in message
    assert "cmlplan.yaml:" in message and len(message.splitlines()) == 1


def test_without_mlflow_a_registry_fails_validation_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cmlplan.specs.config.mlflow_available", lambda: False)
    message = _load(tmp_path)
    assert message.splitlines() == [
        f"{tmp_path}/cmlplan.yaml:11:1: registry.main: ModelRegistry needs MLflow, which is not installed:"
        " pip install 'cmlplan[mlflow]'"
    ]
