"""`cmlplan plan -refresh-only -detailed-exitcode`: only drift, exit 2 when drifted, ignore_changes respected."""

from __future__ import annotations

import json
from pathlib import Path

from test_commands import cmlplan

DEPLOYMENT = "deployment.numbers/add"


def test_refresh_only_reports_drift_and_respects_ignore_changes(add_numbers: Path, fake) -> None:  # type: ignore[no-untyped-def]
    ws = str(add_numbers)
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    clean = cmlplan("plan", "-C", ws, "-refresh-only", "-detailed-exitcode")
    assert clean.code == 0 and "No drift" in clean.out, clean

    spec = add_numbers / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("replicas: 2", "replicas: 3"))  # a spec change is not drift
    assert cmlplan("plan", "-C", ws, "-refresh-only", "-detailed-exitcode").code == 0

    fake.world[DEPLOYMENT]["replicas"] = 5
    drifted = cmlplan("plan", "-C", ws, "-refresh-only", "-detailed-exitcode")
    assert drifted.code == 2, drifted
    assert f"# {DEPLOYMENT} has changed" in drifted.out and "replicas = 2 -> 5" in drifted.out
    assert "will be updated" not in drifted.out
    data = json.loads(cmlplan("plan", "-C", ws, "-refresh-only", "--json").out)
    assert data["resource_changes"] == [] or all(c["action"] == "no-op" for c in data["resource_changes"])
    assert [d["address"] for d in data["resource_drift"]] == [DEPLOYMENT]

    spec.write_text(spec.read_text().replace("kind: Model\n", "kind: Model\nlifecycle: {ignore_changes: [deployment.replicas]}\n"))
    ignored = cmlplan("plan", "-C", ws, "-refresh-only", "-detailed-exitcode")
    assert ignored.code == 0 and "No drift" in ignored.out, ignored


def test_refresh_only_refuses_destroy_in_one_line(add_numbers: Path, fake) -> None:  # type: ignore[no-untyped-def]
    result = cmlplan("plan", "-C", str(add_numbers), "-refresh-only", "-destroy")
    assert result.code == 1 and len(result.err.splitlines()) == 1 and "-refresh-only cannot be combined" in result.err
