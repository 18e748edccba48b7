"""The routes file: writer and readers (providers' strict one, the proxy's) agree with schemas/routes-v1.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cmlplan.providers.deployments import route_model, route_proxy
from cmlplan.providers.routes_schema import ROUTES_SCHEMA
from cmlplan.providers.routing import RoutesFileError, RoutingTable
from cmlplan.serving.defaults import MAX_REQUEST_BYTES
from cmlplan.serving.proxy.routes import load_table

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "routes-v1.json"
SALT = "ab" * 16


def _planned_deployment(model: str = "model.p/m", key_hash: str = "k1") -> dict[str, object]:
    return {
        "model": model, "access_key_hash": key_hash, "project": "p", "name": model.rsplit("/", 1)[1],
        "authentication": True, "stopped": False, "deployment_id": 3,
    }


def _planned_proxy() -> dict[str, object]:
    return {
        "busy_timeout": 2.0, "request_timeout": 4.0, "max_request_bytes": 1000, "port": 8787,
        "api_keys": {"alice-ci": {"key_hash": "h1", "user": "alice", "expires": "2030-01-01T00:00:00+00:00"}},
        "projects": {"p": {"alice": "owner"}},
    }


def _write_some(table: RoutingTable) -> None:
    route_proxy(table, _planned_proxy(), "127.0.0.1")
    route_model(table, _planned_deployment(), [{"replica_id": "m-3-0-p", "url": "http://127.0.0.1:9000"}])
    route_model(table, _planned_deployment("model.p/n", "k2"), [])


def test_checked_in_schema_is_the_one_the_code_uses():
    assert json.loads(SCHEMA_FILE.read_text()) == ROUTES_SCHEMA
    jsonschema.Draft202012Validator.check_schema(ROUTES_SCHEMA)


def test_what_the_writer_writes_matches_the_schema_and_the_proxy_loads_it(tmp_path: Path):
    table = RoutingTable(tmp_path / "routes.json", SALT)
    _write_some(table)
    written = json.loads(table.path.read_text())
    jsonschema.validate(written, json.loads(SCHEMA_FILE.read_text()))
    loaded = load_table(table.path)
    assert loaded.generation == 3
    assert loaded.max_request_bytes == 1000
    assert {m.address for m in loaded.models.values()} == {"model.p/m", "model.p/n"}


def test_the_empty_table_matches_the_schema_and_carries_the_shared_defaults(tmp_path: Path):
    data = RoutingTable(tmp_path / "routes.json", SALT).read()
    jsonschema.validate(data, ROUTES_SCHEMA)
    assert data["proxy"]["max_request_bytes"] == MAX_REQUEST_BYTES


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[]", "top level"),
        (b'{"version": 1}', "top level: 'generation' is a required property"),
    ],
)
def test_a_corrupt_routes_file_is_an_error_and_is_not_overwritten(tmp_path: Path, content: bytes, expected: str):
    table = RoutingTable(tmp_path / "routes.json", SALT)
    table.path.write_bytes(content)
    with pytest.raises(RoutesFileError, match=expected) as caught:
        table.set_model("model.p/m", None)
    assert str(table.path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert table.path.read_bytes() == content


def test_a_wrongly_typed_field_is_named(tmp_path: Path):
    table = RoutingTable(tmp_path / "routes.json", SALT)
    _write_some(table)
    data = json.loads(table.path.read_text())
    next(iter(data["models"].values()))["replicas"] = [{"id": "x", "url": 5}]
    table.path.write_text(json.dumps(data))
    with pytest.raises(RoutesFileError, match=r"models\.k\d\.replicas\[0\]\.url: 5 is not of type 'string'"):
        table.read()


def test_an_unreadable_routes_file_is_an_error(tmp_path: Path):
    table = RoutingTable(tmp_path / "routes.json", SALT)
    table.path.mkdir()
    with pytest.raises(RoutesFileError, match="cannot read routes file"):
        table.read()


def test_the_writer_refuses_to_write_a_table_outside_the_schema(tmp_path: Path):
    table = RoutingTable(tmp_path / "routes.json", SALT)
    _write_some(table)
    before = table.path.read_bytes()
    with pytest.raises(RoutesFileError, match="about to be written"):
        table.change(lambda data: data["models"].update({"bad": {"address": "model.x/y"}}))
    assert table.path.read_bytes() == before


def test_the_proxy_refuses_what_the_schema_refuses(tmp_path: Path):
    from cmlplan.serving.proxy.routes import RoutesError

    table = RoutingTable(tmp_path / "routes.json", SALT)
    _write_some(table)
    data = json.loads(table.path.read_text())
    next(iter(data["models"].values()))["replicas"][0]["url"] = "ftp://x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, ROUTES_SCHEMA)
    table.path.write_text(json.dumps(data))
    with pytest.raises(RoutesError):
        load_table(table.path)
