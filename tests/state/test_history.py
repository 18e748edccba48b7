"""Deployment history entries (cmlplan.state.history) and their place in the state document."""

from __future__ import annotations

from cmlplan.state.document import StateDocument
from cmlplan.state.history import MAX_ENTRIES, changed_paths, history_entry


def _deployment(deployment_id: int, build: int, **extra: object) -> dict[str, object]:
    return {"deployment_id": deployment_id, "build": build, "replicas": 2, "stopped": False, "processes": [], **extra}


def test_a_replace_stops_the_previous_deployment_and_names_what_changed() -> None:
    doc = StateDocument.new("ws")
    first = _deployment(1, 1, registered={"name": "M", "version": 1, "alias": "champion", "run_id": "r1"})
    doc.add_history("deployment.p/m", history_entry("deployment", "create", None, first, 1, "alice@h"))
    second = _deployment(2, 2, registered={"name": "M", "version": 2, "alias": "champion", "run_id": "r2"})
    doc.add_history("deployment.p/m", history_entry("deployment", "replace", first, second, 2, "bob@h"))
    entries = doc.history["deployment.p/m"]
    assert [e.deployment_id for e in entries] == [1, 2]
    assert entries[0].stopped_at is not None and entries[1].stopped_at is None
    assert entries[1].by == "bob@h" and entries[1].registered == {"name": "M", "version": 2, "alias": "champion", "run_id": "r2"}
    assert entries[1].changed == ["build", "deployment_id", "registered.run_id", "registered.version"]


def test_a_delete_stops_the_last_deployment_and_history_survives_a_round_trip() -> None:
    doc = StateDocument.new("ws")
    attrs = _deployment(1, 1)
    doc.add_history("deployment.p/m", history_entry("deployment", "create", None, attrs, 1, "a@h"))
    doc.add_history("deployment.p/m", history_entry("deployment", "delete", attrs, None, 2, "a@h"), deleted=True)
    loaded = StateDocument.from_json(doc.to_json(), "state.json")
    assert loaded.history["deployment.p/m"][0].stopped_at is not None
    assert loaded.history["deployment.p/m"][1].action == "delete"


def test_history_is_capped_and_processes_alone_are_not_a_change() -> None:
    doc = StateDocument.new("ws")
    for serial in range(MAX_ENTRIES + 5):
        doc.add_history("model.p/m", history_entry("model", "update", {"a": 1}, {"a": 2}, serial, "a@h"))
    assert len(doc.history["model.p/m"]) == MAX_ENTRIES
    assert changed_paths({"processes": [1], "a": 1}, {"processes": [2], "a": 1}) == []
