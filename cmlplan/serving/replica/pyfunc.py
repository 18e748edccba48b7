"""Serve an MLflow model folder through ``mlflow.pyfunc``: the request becomes a DataFrame, the
prediction becomes JSON.

Accepted requests (the JSON value of the CML ``request`` field):

- ``{"columns": [...], "data": [[...], ...]}`` (pandas' split orient, as MLflow's ``dataframe_split``);
- a list of records, ``[{"col": value, ...}, ...]``;
- one record, a dict of column -> value (``{"sepal_length": 5.1, ...}``); column -> list of values works too;
- MLflow's scoring-server wrappers ``{"dataframe_split": ...}``, ``{"dataframe_records": ...}``,
  ``{"inputs": ...}``.

The reply is JSON-encodable: arrays and Series become lists, DataFrames lists of records, numpy
scalars plain numbers. mlflow (mlflow-skinny, as the build installs it) and pandas come from the
model's own requirements.
"""

import os
from collections.abc import Callable
from typing import Any


def load_predict(shim_file: str) -> Callable[[Any], Any]:
    """The ``predict(request)`` function for the model folder holding ``shim_file``."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(os.path.dirname(os.path.abspath(shim_file)))

    def predict(request: Any) -> Any:
        return to_json(model.predict(to_frame(request)))

    return predict


def to_frame(request: Any) -> Any:
    """The request as a pandas DataFrame; ValueError naming the accepted shapes otherwise."""
    import pandas as pd

    if isinstance(request, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs"):
            if key in request and len(request) == 1:
                return to_frame(request[key])
        if "columns" in request and "data" in request:
            return pd.DataFrame(request["data"], columns=request["columns"])
        if request and all(isinstance(v, list) for v in request.values()):
            return pd.DataFrame(request)
        if request and not any(isinstance(v, dict | list) for v in request.values()):
            return pd.DataFrame([request])
    if isinstance(request, list) and request and all(isinstance(r, dict) for r in request):
        return pd.DataFrame.from_records(request)
    raise ValueError(
        'expected {"columns": [...], "data": [[...]]}, a list of records, or a dict of column -> value'
    )


def to_json(value: Any) -> Any:
    """``value`` with numpy and pandas objects turned into plain JSON values."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # DataFrame
        return [to_json(r) for r in value.to_dict(orient="records")]
    if hasattr(value, "tolist"):  # ndarray, Series, numpy scalar
        return to_json(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
