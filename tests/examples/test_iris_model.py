"""examples/iris: fit.py trains a usable model and predict.py serves it."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("iris") / "iris"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("model.pkl", ".cmlplan", "__pycache__"))
    result = subprocess.run(
        [PYTHON, "fit.py"], cwd=folder, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return folder, result.stdout


@pytest.fixture(scope="module")
def predict_module(trained):
    folder, _ = trained
    return _load(folder / "predict.py", "iris_predict_under_test")


def test_fit_reports_metrics_and_writes_model(trained):
    folder, stdout = trained
    assert "MSE" in stdout
    r2 = re.search(r"R2:\s*(-?[0-9.]+)", stdout)
    assert r2, stdout
    assert float(r2.group(1)) > 0.8
    assert (folder / "model.pkl").is_file()


@pytest.mark.parametrize("value", [5.4, "5.4", 5])
def test_predict_returns_petal_width(predict_module, value):
    out = predict_module.predict({"petal_length": value})
    assert isinstance(out, dict)
    assert set(out) == {"petal_width"}
    assert isinstance(out["petal_width"], float)
    assert 1.5 < out["petal_width"] < 2.5
    assert out["petal_width"] == round(out["petal_width"], 4)


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"petal_length": "wide"},
        {"petal_length": None},
        {"petal_length": True},
        {"petal_length": "nan"},
        [5.4],
    ],
)
def test_predict_rejects_invalid_input(predict_module, args):
    with pytest.raises(ValueError, match="petal_length|JSON object"):
        predict_module.predict(args)


def test_requirements_pin_installed_scikit_learn():
    import sklearn

    pins = (EXAMPLE / "requirements.txt").read_text().split()
    assert f"scikit-learn=={sklearn.__version__}" in pins


def test_no_gitignore_in_example():
    # builds skip gitignored files, and model.pkl must be in the build's source snapshot
    assert not (EXAMPLE / ".gitignore").exists()
