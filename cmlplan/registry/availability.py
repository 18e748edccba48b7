"""Whether mlflow is installed, asked without importing it (importing mlflow takes seconds)."""

from __future__ import annotations

import importlib.util

MLFLOW_HINT = "needs MLflow, which is not installed: pip install 'cmlplan[mlflow]'"


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None
