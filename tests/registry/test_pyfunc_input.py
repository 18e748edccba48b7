"""The replica's pyfunc request shapes and JSON replies (cmlplan.serving.replica.pyfunc)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cmlplan.serving.replica.pyfunc import to_frame, to_json


@pytest.mark.parametrize(
    "request_value",
    [
        {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]},
        [{"a": 1, "b": 2}, {"a": 3, "b": 4}],
        {"a": [1, 3], "b": [2, 4]},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
        {"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]},
    ],
)
def test_every_documented_shape_becomes_the_same_frame(request_value) -> None:  # type: ignore[no-untyped-def]
    frame = to_frame(request_value)
    assert list(frame.columns) == ["a", "b"]
    assert frame.to_dict(orient="list") == {"a": [1, 3], "b": [2, 4]}


def test_one_record_is_one_row() -> None:
    frame = to_frame({"petal_length": 5.4})
    assert frame.shape == (1, 1) and frame.iloc[0, 0] == 5.4


@pytest.mark.parametrize("bad", [[1, 2, 3], "text", {}, [], {"a": {"nested": 1}}])
def test_other_shapes_are_refused_with_the_accepted_ones_named(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="list of records"):
        to_frame(bad)


def test_replies_are_json_encodable() -> None:
    values = [
        np.array([1.5, 2.5]),
        pd.Series([1, 2]),
        pd.DataFrame({"x": [1.0], "y": ["a"]}),
        np.float32(1.25),
        {"k": np.int64(3)},
    ]
    encoded = [json.loads(json.dumps(to_json(v))) for v in values]
    assert encoded == [[1.5, 2.5], [1, 2], [{"x": 1.0, "y": "a"}], 1.25, {"k": 3}]
