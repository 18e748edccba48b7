"""What serving a registered MLflow model installs: the model's requirements with full mlflow, as
logged, against the same requirements with mlflow-skinny (what cmlplan's builds install).

    .venv/bin/python bench/registered_venv.py

Logs examples/iris-mlflow's kind of model (a scikit-learn Ridge) to a throw-away SQLite tracking
store, then creates two venvs side by side from its requirements.txt, one as logged and one through
``cmlplan.registry.requirements.serving_requirements``, checks that the skinny one loads the model
with ``mlflow.pyfunc`` and predicts what the full one predicts, and prints both sizes and their
ratio. Needs network access to the package index (pip install); takes a few minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
sys.path.insert(0, str(REPO))

from cmlplan.registry.requirements import serving_requirements  # noqa: E402

LOG_MODEL = """
import sys, mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import Ridge
mlflow.set_tracking_uri(f"sqlite:///{sys.argv[1]}/mlflow.db")
frame = load_iris(as_frame=True).frame.rename(columns={"petal length (cm)": "petal_length", "petal width (cm)": "petal_width"})
x = frame[["petal_length"]]
with mlflow.start_run():
    info = mlflow.sklearn.log_model(Ridge().fit(x, frame["petal_width"]), name="model", input_example=x.head(3))
mlflow.artifacts.download_artifacts(info.model_uri, dst_path=f"{sys.argv[1]}/model")
"""
PREDICT = """
import sys, mlflow.pyfunc, pandas as pd
print(float(mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame([{"petal_length": 5.4}]))[0]))
"""


def run(*argv: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=1800).stdout


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cmlplan-bench-venv-") as tmp:
        root = Path(tmp)
        run(str(PYTHON), "-c", LOG_MODEL, str(root), cwd=root)
        logged = (root / "model" / "requirements.txt").read_text()
        results = {}
        for name, text in (("mlflow (as logged)", logged), ("mlflow-skinny (cmlplan)", serving_requirements(logged))):
            venv = root / name.split()[0]
            (root / f"{venv.name}.txt").write_text(text)
            started = time.monotonic()
            run(sys.executable, "-m", "venv", str(venv), cwd=root)
            run(str(venv / "bin" / "pip"), "install", "-q", "-r", str(root / f"{venv.name}.txt"), cwd=root)
            seconds = time.monotonic() - started
            prediction = float(run(str(venv / "bin" / "python"), "-c", PREDICT, str(root / "model"), cwd=root).strip())
            results[name] = (size(venv), seconds, prediction)
            print(f"{name:26s} {size(venv) / 1e6:7.0f} MB  install {seconds:5.1f}s  predicts {prediction:.4f}", flush=True)
        (full, full_s, full_p), (skinny, skinny_s, skinny_p) = results.values()
        same = abs(full_p - skinny_p) < 1e-9
        print(f"skinny/full size {skinny / full:.2f}, install time {skinny_s / full_s:.2f}; same prediction: {same}")


if __name__ == "__main__":
    main()
