"""examples/churn: generate.py trains a usable model, predict.py serves and tracks it through the
replica's own prediction path, and the job's drift statistic (PSI) tells drift from no drift.

The whole story on the local provider (apply, calls, the job, read back as a viewer) is
``tests/providers/local/test_metrics_e2e.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cmlplan.serving.metrics.shim import SHIM_DIR
from cmlplan.serving.replica.prediction import predict_reply

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
FEATURES = ("tenure", "monthly_charges", "support_calls")


def _load(path: Path, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("churn") / "churn"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("model.pkl", "train.csv", ".cmlplan", "__pycache__"))
    result = subprocess.run([PYTHON, "generate.py"], cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


def test_generate_trains_a_model_that_ranks_churners(churn: tuple[Path, str]) -> None:
    folder, printed = churn
    auc = float(re.search(r"training ROC AUC ([\d.]+)", printed).group(1))  # type: ignore[union-attr]
    assert auc > 0.7
    header = (folder / "train.csv").read_text().splitlines()[0]
    assert header == "tenure,monthly_charges,support_calls,churned"
    assert (folder / "model.pkl").stat().st_size > 0


def test_the_model_answers_in_cml_shape_and_tracks_its_inputs(churn: tuple[Path, str]) -> None:
    folder, _ = churn
    sys.path.append(str(SHIM_DIR))  # what the replica does for ``import cdsw``
    try:
        predict = _load(folder / "predict.py", "churn_predict").predict
    finally:
        sys.path.remove(str(SHIM_DIR))
    risky = {"tenure": 1, "monthly_charges": 140.0, "support_calls": 6}
    loyal = {"tenure": 70, "monthly_charges": 20.0, "support_calls": 0}
    answers = []
    for request in (risky, loyal):
        status, body, tracked = predict_reply(predict, json.dumps(request).encode(), "r0", f"uuid-{len(answers)}")
        assert status == 200, body
        reply = json.loads(body)
        assert reply["response"]["uuid"] == reply["uuid"]  # @cdsw.model_metrics: {"uuid", "prediction"}
        answers.append(reply["response"]["prediction"]["churn_risk"])
        metrics = json.loads(tracked or b"{}")["metrics"]
        assert metrics == {**{k: float(v) for k, v in request.items()}, "churn_risk": answers[-1]}
    assert 0 <= answers[1] < answers[0] <= 1
    status, body, _ = predict_reply(predict, b'{"tenure": 3}', "r0")
    assert status == 500 and "send a JSON object with tenure, monthly_charges, support_calls" in body.decode()


def test_psi_tells_drift_from_no_drift(churn: tuple[Path, str]) -> None:
    folder, _ = churn
    sys.path.insert(0, str(folder))
    try:
        generate = _load(folder / "generate.py", "churn_generate")
        job = _load(folder / "job.py", "churn_job")
    finally:
        sys.path.remove(str(folder))
    training = generate.customers(4000, seed=7)[0][:, 0]
    same = generate.customers(2000, seed=99)[0][:, 0]
    drifted = generate.customers(2000, seed=99, tenure_scale=6.0)[0][:, 0]  # far newer customers
    assert job.psi(training, training) == pytest.approx(0.0, abs=1e-9)
    assert job.psi(training, same) < 0.1  # the usual "no significant change" bound
    assert job.psi(training, drifted) > 0.25  # the usual "significant shift" bound
