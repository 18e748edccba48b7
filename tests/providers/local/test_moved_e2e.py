"""A Moved document on the real local provider: the model keeps answering, same key, same replicas."""

from __future__ import annotations

from pathlib import Path

import pytest
from localws import EXAMPLES, live_workspace

pytestmark = pytest.mark.slow

MOVED = """---
apiVersion: cmlplan/v1
kind: Moved
metadata: {name: add-is-now-plus}
spec: {from: model.numbers/add, to: model.numbers/plus}
"""


def test_a_renamed_model_keeps_its_replicas_key_and_deployment_id(tmp_path: Path) -> None:
    with live_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers") as ws:
        ws.apply()
        key = ws.key("model.numbers/add")
        status, body = ws.call("model.numbers/add", {"a": 3, "b": 5})
        assert (status, body["response"]) == (200, {"result": 8}), body
        before = ws.state_show("deployment.numbers/add")
        pids = {p.name: p.pid for p in ws.programs() if p.state == "RUNNING"}
        assert len([name for name in pids if "replica" in name or "numbers" in name]) >= 2, pids

        ws.replace_in_spec("metadata: {name: add, project: numbers}", "metadata: {name: plus, project: numbers}")
        ws.set_spec(ws.spec.read_text() + MOVED)
        plan = ws.plan_json()
        assert {"from": "deployment.numbers/add", "to": "deployment.numbers/plus"} in plan["resource_moves"]
        assert [c["address"] for c in plan["resource_changes"] if c["action"] != "no-op"] == []
        assert plan["has_changes"] is True
        assert "has moved to model.numbers/plus" in ws.cli("plan").stdout

        ws.apply()
        after = ws.state_show("deployment.numbers/plus")
        assert after["attributes"]["deployment_id"] == before["attributes"]["deployment_id"]
        assert after["attributes"]["processes"] == before["attributes"]["processes"]
        assert {p.name: p.pid for p in ws.programs() if p.state == "RUNNING"} == pids  # nothing restarted
        assert ws.key("model.numbers/plus") == key
        assert not (ws.dir / ".cmlplan" / "keys" / "model.numbers_add").exists()
        status, body = ws.post({"accessKey": key, "request": {"a": 3, "b": 5}})
        assert (status, body["response"]) == (200, {"result": 8}), body
        assert ws.plan_json()["has_changes"] is False
