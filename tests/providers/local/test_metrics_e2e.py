"""The model metrics story on the real local provider, with examples/churn.

Apply, call the CML-style model (``import cdsw``, ``@cdsw.model_metrics``), run the example's job
(read_metrics, track_delayed_metrics with ground truth, track_aggregate_metrics of ROC AUC and PSI)
as a separate process with an API key, then read everything back as a viewer.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from cmlplan.metrics import MetricsClient, MetricsError

if TYPE_CHECKING:
    from localws import LiveWorkspace

from localws import EXAMPLES, PYTHON, live_workspace

pytestmark = pytest.mark.slow

MODEL = "model.churn/risk"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def churn_ws(tmp_path_factory: pytest.TempPathFactory):
    with live_workspace(EXAMPLES / "churn", tmp_path_factory.mktemp("e2e") / "churn") as ws:
        subprocess.run([str(PYTHON), "generate.py"], cwd=ws.dir, check=True, capture_output=True, timeout=300)
        ws.apply()
        yield ws


def test_churn_predictions_ground_truth_and_aggregates(churn_ws: LiveWorkspace) -> None:
    sys.path.insert(0, str(churn_ws.dir))
    try:
        from generate import customers
    finally:
        sys.path.remove(str(churn_ws.dir))
    features, labels = customers(80, seed=11)
    truth = []
    for row, label in zip(features.tolist(), labels.tolist(), strict=True):
        status, body = churn_ws.call(MODEL, dict(zip(("tenure", "monthly_charges", "support_calls"), row, strict=True)))
        assert status == 200, body
        response = body["response"]
        assert response["uuid"] == body["uuid"] and 0 <= response["prediction"]["churn_risk"] <= 1
        truth.append((response["uuid"], label))
    ground_truth = churn_ws.dir / "ground_truth.csv"
    with ground_truth.open("w", newline="") as handle:
        csv.writer(handle).writerows([("uuid", "churned"), *truth])

    base = f"http://127.0.0.1:{churn_ws.port}"
    owner_key = churn_ws.key("apikey.alice-job")
    job = subprocess.run(
        [str(PYTHON), "job.py", str(ground_truth), "--minutes", "30"],
        cwd=churn_ws.dir,
        env={**os.environ, "CMLPLAN_METRICS_URL": base, "CMLPLAN_API_KEY": owner_key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert job.returncode == 0, job.stderr
    printed = json.loads(job.stdout)
    assert printed["labelled"] == 80
    assert printed["predictions"] >= 80  # the example input answered during the rollout is tracked too
    assert printed["roc_auc"] > 0.6
    assert printed["psi_tenure"] >= 0

    viewer = MetricsClient(base, churn_ws.key("apikey.bob-viewer"))
    entries = viewer.read_metrics(model=MODEL)["metrics"]
    stored = {e["predictionUuid"]: e for e in entries if e["predictionUuid"]}
    for uuid, label in truth:
        assert stored[uuid]["metrics"]["churned"] == label
        assert set(stored[uuid]["metrics"]) == {"tenure", "monthly_charges", "support_calls", "churn_risk", "churned"}
    (aggregate,) = [e for e in entries if e["predictionUuid"] is None]
    assert aggregate["metrics"] == printed
    assert aggregate["modelCrn"] == MODEL and aggregate["modelBuildCrn"] == "1"
    with pytest.raises(MetricsError, match="belongs to project 'churn', where user 'bob' may not write"):
        viewer.track_delayed_metrics({"churned": 1}, truth[0][0])
    assert (churn_ws.dir / ".cmlplan" / "run" / "metrics.db").is_file()


def test_cmlplan_metrics_prints_the_minutes_just_served(churn_ws: LiveWorkspace) -> None:
    """Runs after the story above: its 80 calls through the proxy are counted."""
    seen: list[dict] = []

    def counted() -> dict | None:
        report = json.loads(churn_ws.cli("metrics", MODEL, "-since", "30m", "-json").stdout)
        seen.append(report)
        return report if sum(c["requests"] for c in report["cells"]) >= 80 else None

    try:
        report = wait_for(counted, 30.0, "the proxy's technical flush")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last report: {seen[-1] if seen else None}") from None
    assert report["model"] == MODEL
    cell = report["cells"][-1]
    assert cell["failures"] == 0 and cell["p50_ms"] > 0 and cell["request_bytes"] > 0
    text = churn_ws.cli("metrics", MODEL, "-since", "30m").stdout
    assert "p95 ms" in text and "total: " in text
    bad = churn_ws.cli("metrics", MODEL, "-since", "soon", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: -since:") and "Traceback" not in bad.stderr
