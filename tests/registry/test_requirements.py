"""Registered models are served by mlflow-skinny (cmlplan.registry.requirements)."""

from __future__ import annotations

from cmlplan.providers.source import parse_requirements
from cmlplan.registry.requirements import serving_requirements

LOGGED = "mlflow==3.17.2\nnumpy==2.4.6\npandas==3.1.1\nscikit-learn==1.9.1\nscipy==1.17.1\nskops==0.16.0\n"


def test_mlflow_becomes_mlflow_skinny_of_the_same_version() -> None:
    served = parse_requirements(serving_requirements(LOGGED))
    assert served["mlflow-skinny"] == "==3.17.2" and "mlflow" not in served
    assert served["pandas"] == "==3.1.1" and served["numpy"] == "==2.4.6"  # the model's own pins stay
    assert served["scikit-learn"] == "==1.9.1" and served["skops"] == "==0.16.0"


def test_pandas_and_numpy_are_added_when_the_model_does_not_name_them() -> None:
    served = parse_requirements(serving_requirements("# logged by a pyfunc\nMLflow >= 3.0\ncloudpickle==3.1\n"))
    assert served == {"cloudpickle": "==3.1", "mlflow-skinny": ">=3.0", "numpy": "<3", "pandas": "<4"}


def test_what_cannot_be_swapped_safely_is_left_alone() -> None:
    for text in ("mlflow[gateway]==3.17.2\n", "numpy==2\n", "", "mlflow @ https://example.invalid/mlflow.whl\n"):
        assert serving_requirements(text) == text
    assert serving_requirements("mlflow-skinny==3.17.2\n") == "mlflow-skinny==3.17.2\n"
