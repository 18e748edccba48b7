"""`cmlplan models`, `history` and `lineage` views over a state document (no provider involved)."""

from __future__ import annotations

import pytest

from cmlplan.engine.catalog import history_rows, model_rows
from cmlplan.engine.lineage import lineage_of, render_dot, render_text
from cmlplan.errors import CmlplanError
from cmlplan.state.document import ResourceState, StateDocument
from cmlplan.state.history import history_entry

REGISTERED = {
    "registry": "main", "uri": "http://127.0.0.1:5000", "name": "M", "version": 2, "alias": "champion",
    "run_id": "abc123", "artifact_digest": "sha256:00", "params": {"alpha": "1"}, "metrics": {"r2": 0.9},
    "datasets": [{"name": "iris", "digest": "d1", "source": "{}", "context": "training"}],
}


def _state() -> StateDocument:
    doc = StateDocument.new("ws")
    model = {
        "project": "p", "name": "m", "source": {"registered": {"registry": "main", "name": "M", "alias": "champion"}},
        "authentication": True, "access_key_hash": "ab12cd34" + "0" * 56,
        "lineage": {"training_data": [{"path": "data/iris.csv", "hash": "sha256:ff"}]},
    }
    build = {"model": "model.p/m", "number": 2, "hash": "h2", "registered": REGISTERED}
    deployment = {
        "model": "model.p/m", "project": "p", "name": "m", "build": 2, "replicas": 2, "deployment_id": 5,
        "processes": [{"name": "a"}, {"name": "b", "orphan": True}],
    }
    for address, kind, provider, attrs in (
        ("model.p/m", "model", "cmlplan", model),
        ("build.p/m#2", "build", "local", build),
        ("deployment.p/m", "deployment", "local", deployment),
        ("proxy.default", "proxy", "local", {"host": "0.0.0.0", "port": 8787, "busy_timeout": 30.0,
                                             "request_timeout": 30.0, "max_request_bytes": 5}),
    ):
        doc.set_resource(address, ResourceState(kind=kind, provider=provider, attributes=attrs))
    doc.add_history("deployment.p/m", history_entry("deployment", "create", None, deployment, 3, "alice@h"))
    return doc


def test_models_row_counts_running_replicas_and_names_the_registered_version() -> None:
    (row,) = model_rows(_state())
    assert row["source"] == "registered M v2 (alias champion) in main"
    assert (row["build"], row["deployment_id"], row["status"]) == (2, 5, "degraded")
    assert row["replicas"] == {"running": 1, "wanted": 2} and row["applied_by"] == "alice@h"


def test_history_of_a_model_includes_its_deployment_and_unknown_addresses_are_one_line() -> None:
    rows = history_rows(_state(), "model.p/m")
    assert [(r["address"], r["deployment_id"]) for r in rows] == [("deployment.p/m", 5)]
    with pytest.raises(CmlplanError, match="model.p/none: no such resource"):
        history_rows(_state(), "model.p/none")


def test_lineage_chains_data_run_version_build_deployment_route() -> None:
    graph = lineage_of(_state(), "model.p/m")
    assert [n["kind"] for n in graph.to_dict()["nodes"]] == [
        "dataset", "dataset", "run", "registered_version", "build", "deployment", "route"
    ]
    assert ("data:data/iris.csv", "run:abc123") in graph.edges and ("run:abc123", "version:M/2") in graph.edges
    route = graph.nodes["route:p/m"]
    assert route["url"] == "http://127.0.0.1:8787/model" and route["access_key"] == "ab12cd34"
    text = render_text(graph)
    assert "run: run abc123" in text and "-> deployment: deployment 5" in text
    assert render_dot(graph).count("->") == len(graph.edges)
    with pytest.raises(CmlplanError, match="no such model"):
        lineage_of(_state(), "model.p/other")
