"""The SDK in model code: metrics attach to the running prediction, checked where they are tracked."""

import math

import pytest

import cmlplan.metrics
from cmlplan.serving.metrics import (
    MAX_KEYS,
    MetricsError,
    model_metrics,
    track_metric,
    track_metrics,
    tracking,
)


@pytest.fixture
def prediction():
    current = tracking.begin("0b6c-uuid")
    yield current
    tracking.finish()


def test_tracked_metrics_travel_with_the_prediction(prediction):
    track_metric("score", 0.75)
    track_metrics({"inputs": [1, 2], "score": 0.8, "label": {"name": "churn"}})
    assert prediction.metrics == {"score": 0.8, "inputs": [1, 2], "label": {"name": "churn"}}
    assert prediction.encoded("r1") == (
        b'{"uuid":"0b6c-uuid","replica":"r1","metrics":{"score":0.8,"inputs":[1,2],"label":{"name":"churn"}}}'
    )


def test_nothing_tracked_means_nothing_to_store(prediction):
    assert prediction.encoded("r1") is None


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({f"k{i}": i for i in range(MAX_KEYS + 1)}, "at most 50"),
        ({"when": object()}, "metric 'when' is not a JSON value"),
        ({"nan": math.nan}, "metric 'nan' is not a JSON value"),
        ({"": 1}, "non-empty string"),
        ({3: 1}, "non-empty string"),
        ({"big": "x" * 70000}, "at most 65536"),
    ],
)
def test_bad_metrics_fail_where_they_are_tracked_and_keep_the_good_ones(prediction, metrics, message):
    track_metric("kept", 1)
    with pytest.raises(MetricsError, match=message):
        track_metrics(metrics)
    assert prediction.metrics == {"kept": 1}


def test_fifty_keys_are_allowed(prediction):
    track_metrics({f"k{i}": i for i in range(MAX_KEYS)})
    assert len(prediction.metrics) == MAX_KEYS


def test_tracking_outside_a_prediction_says_what_to_use_instead():
    with pytest.raises(MetricsError, match="track_delayed_metrics"):
        track_metric("score", 1)


def test_model_metrics_answers_uuid_and_prediction(prediction):
    @model_metrics
    def predict(args):
        track_metric("x", args["x"])
        return {"risk": 0.1}

    assert predict({"x": 3}) == {"uuid": "0b6c-uuid", "prediction": {"risk": 0.1}}
    assert prediction.recorded  # stored even if it had tracked nothing
    assert predict.__name__ == "predict"


def test_cmlplan_metrics_reexports_the_sdk():
    assert cmlplan.metrics.track_metric is track_metric
    assert "read_metrics" in cmlplan.metrics.__all__


def test_the_client_needs_a_url_and_a_key(monkeypatch):
    monkeypatch.delenv("CMLPLAN_METRICS_URL", raising=False)
    monkeypatch.delenv("CMLPLAN_API_KEY", raising=False)
    with pytest.raises(MetricsError, match="CMLPLAN_METRICS_URL"):
        cmlplan.metrics.read_metrics(model="m")
    with pytest.raises(MetricsError, match="CMLPLAN_API_KEY"):
        cmlplan.metrics.read_metrics(model="m", url="http://127.0.0.1:1")


def test_the_client_refuses_a_window_ending_before_it_starts():
    with pytest.raises(MetricsError, match="before start_timestamp_ms"):
        cmlplan.metrics.track_aggregate_metrics(
            {"auc": 0.5}, 2000, 1000, model="m", url="http://x", api_key="k"
        )
