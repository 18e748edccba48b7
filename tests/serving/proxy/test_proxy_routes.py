"""Loading and validating the routing file, in process."""

import hashlib
import json
from pathlib import Path

import pytest

from cmlplan.serving.proxy.routes import RoutesError, load_table


def document(**overrides):
    doc = {
        "version": 1,
        "generation": 3,
        "salt": "ab",
        "proxy": {"busy_timeout": 2, "request_timeout": 5.5, "max_request_bytes": 100},
        "models": {
            "h1": {
                "address": "model.p/m",
                "project": "p",
                "name": "m",
                "authentication": True,
                "stopped": False,
                "deployment_id": 2,
                "replicas": [{"id": "r1", "url": "http://127.0.0.1:1/"}],
            },
        },
        "api_keys": {"k1": {"name": "ci", "user": "alice", "expires_at": "2030-01-01T00:00:00+00:00"}},
        "projects": {"p": {"alice": "owner"}},
    }
    doc.update(overrides)
    return doc


def write(tmp_path: Path, doc) -> Path:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(doc))
    return path


def test_loads_a_valid_table(tmp_path):
    table = load_table(write(tmp_path, document()))
    assert table.generation == 3 and table.busy_timeout == 2.0 and table.max_request_bytes == 100
    model = table.models["h1"]
    assert model.address == "model.p/m" and model.authentication and model.deployment_id == 2
    assert [(r.id, r.url) for r in model.pool.replicas] == [("r1", "http://127.0.0.1:1")]
    assert table.is_collaborator("p", "alice") and not table.is_collaborator("p", "bob")
    assert table.key_hash("key") == hashlib.sha256(b"abkey").hexdigest()


def test_reload_keeps_pools_and_replicas_by_identity(tmp_path):
    first = load_table(write(tmp_path, document()))
    replica = first.models["h1"].pool.replicas[0]
    replica.busy = True
    doc = document(generation=4)
    doc["models"]["h2"] = doc["models"].pop("h1")
    doc["models"]["h2"]["replicas"].append({"id": "r2", "url": "http://127.0.0.1:2"})
    second = load_table(write(tmp_path, doc), first)
    pool = second.models["h2"].pool
    assert pool is first.models["h1"].pool
    assert pool.replicas[0] is replica and replica.busy
    assert pool.replicas[1].url == "http://127.0.0.1:2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 2}, "unsupported version"),
        ({"generation": "x"}, "generation must be an integer"),
        ({"proxy": {"busy_timeout": 0}}, "busy_timeout must be a positive number"),
        ({"models": {"h": {"address": "a"}}}, "missing field 'project'"),
        (
            {
                "models": {
                    "h": {
                        "address": "a",
                        "project": "p",
                        "name": "n",
                        "replicas": [{"id": "r", "url": "ftp://x"}],
                    }
                }
            },
            "must start with http://",
        ),
        ({"api_keys": {"k": {"name": "n", "user": "u", "expires_at": "2030-01-01T00:00:00"}}}, "UTC offset"),
        ({"proxy": {"metrics_store": "sqlite:x"}}, "proxy.metrics_store must be an object"),
        ({"proxy": {"metrics_store": {"dsn": "postgresql://u:p@h/d"}}}, 'must be {"url": "sqlite:PATH"} or {"dsn_env": VAR}'),
        ({"proxy": {"metrics_store": {"dsn_env": ""}}}, "proxy.metrics_store.dsn_env must be a non-empty string"),
        ({"proxy": {"metrics_retention_days": 0}}, "metrics_retention_days must be a positive number"),
    ],
)
def test_invalid_files_raise_one_line(tmp_path, overrides, message):
    with pytest.raises(RoutesError, match=message) as caught:
        load_table(write(tmp_path, document(**overrides)))
    assert "\n" not in str(caught.value)


def test_metrics_settings_and_the_deployment_name_in_the_store(tmp_path):
    doc = document()
    doc["proxy"].update(metrics_store={"dsn_env": "METRICS_DSN"}, metrics_retention_days=3, technical_flush_seconds=1)
    doc["models"]["h1"]["build"] = "4"
    table = load_table(write(tmp_path, doc))
    assert table.metrics_store == {"dsn_env": "METRICS_DSN"}
    assert (table.metrics_retention_days, table.technical_flush_seconds) == (3.0, 1.0)
    model = table.models["h1"]
    assert (model.build, model.deployment) == ("4", "model.p/m/deployments/2")
    assert table.find_route(None, "model.p/m/deployments/2") is model and table.find_route("model.x", None) is None
    assert load_table(write(tmp_path, document())).metrics_store is None


def test_failed_reload_does_not_touch_the_running_pools(tmp_path):
    first = load_table(write(tmp_path, document()))
    doc = document()
    doc["models"]["h1"]["replicas"] = [{"id": "r9", "url": "http://127.0.0.1:9"}]
    doc["api_keys"] = {"k": "not an object"}
    with pytest.raises(RoutesError):
        load_table(write(tmp_path, doc), first)
    assert first.models["h1"].pool.replicas[0].id == "r1"
