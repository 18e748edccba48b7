"""The petal-width model's serving function, called by a replica as predict(args).

model.pkl (written by fit.py) is loaded once, when the replica imports this file.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

MODEL_PATH = Path(__file__).resolve().parent / "model.pkl"

with MODEL_PATH.open("rb") as _f:
    _model = pickle.load(_f)


def _petal_length(args: object) -> float:
    if not isinstance(args, dict):
        raise ValueError(f'expected a JSON object like {{"petal_length": 5.4}}, got {type(args).__name__}')
    if "petal_length" not in args:
        raise ValueError('missing field "petal_length" (a number in cm, e.g. {"petal_length": 5.4})')
    value = args["petal_length"]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f'"petal_length" must be a number, got {value!r}')
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f'"petal_length" must be a number, got {value!r}') from None
    if not math.isfinite(number):
        raise ValueError(f'"petal_length" must be a finite number, got {value!r}')
    return number


def predict(args: dict) -> dict:
    """{"petal_length": 5.4} -> {"petal_width": 1.9...}; numeric strings are accepted."""
    petal_length = _petal_length(args)
    width = float(_model.predict([[petal_length]])[0])
    return {"petal_width": round(width, 4)}
