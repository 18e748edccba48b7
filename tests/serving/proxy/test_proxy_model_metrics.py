"""Per-prediction metrics end to end: a real replica tracks, the proxy stores, the SDK reads and writes.

The model is CML code (``import cdsw``); the store is SQLite or PostgreSQL.
"""

import json
import time
import urllib.request

import pytest

from cmlplan.serving.metrics import MetricsClient, MetricsError
from cmlplan.serving.store import PredictionRow, open_store

KEY = "ak-churn-0001"
OWNER, VIEWER, OUTSIDER = "api-owner-key", "api-viewer-key", "api-outsider-key"
MODEL = """
import cdsw

@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("tenure", args["tenure"])
    cdsw.track_metrics({"risk": 0.5 if args["tenure"] < 12 else 0.1})
    if args.get("fail"):
        raise ValueError("no prediction for you")
    return {"risk": 0.5 if args["tenure"] < 12 else 0.1}

def plain(args):
    return args
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return {"url": f"sqlite:{tmp_path / '.cmlplan' / 'metrics.db'}"}
    return {"url": request.getfixturevalue("postgres_dsn")}


def start(serving, tmp_path, store, function="predict"):
    source = tmp_path / "churn"
    source.mkdir(exist_ok=True)
    (source / "predict.py").write_text(MODEL)
    replica = serving.replica(function, "churn-r0", source=source)
    entry = serving.model_entry("model.churn", [replica], project="churn")
    entry["build"] = "7"
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {KEY: entry},
        api_keys={
            OWNER: {"name": "owner", "user": "alice"},
            VIEWER: {"name": "viewer", "user": "bob"},
            OUTSIDER: {"name": "outsider", "user": "eve"},
        },
        projects={"churn": {"alice": "owner", "bob": "viewer"}, "other": {"eve": "owner"}},
    )
    document = json.loads(routes.read_text())
    document["proxy"]["metrics_store"] = store
    routes.write_text(json.dumps(document))
    return serving.proxy(routes)


def test_tracked_metrics_are_stored_and_read_back_with_ground_truth_and_aggregates(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store)
    before = int(time.time() * 1000)
    replies = [serving.call_model(proxy, KEY, {"tenure": t}) for t in (3, 24)]
    after = int(time.time() * 1000)
    assert [r.status for r in replies] == [200, 200]
    first = replies[0].body["response"]
    assert first["prediction"] == {"risk": 0.5}
    assert replies[0].body["response"]["uuid"] == replies[0].body["uuid"]  # CML's shape, the replica's UUID

    owner = MetricsClient(proxy.url, OWNER)
    viewer = MetricsClient(proxy.url, VIEWER)
    owner.track_delayed_metrics({"churned": True}, first["uuid"])
    owner.track_aggregate_metrics({"auc": 0.9}, before, after, model="model.churn")
    read = viewer.read_metrics(model="model.churn", start_timestamp_ms=before, end_timestamp_ms=after)
    entries = read["metrics"]
    predictions = {e["predictionUuid"]: e for e in entries if e["predictionUuid"]}
    assert set(predictions) == {r.body["uuid"] for r in replies}
    assert predictions[first["uuid"]]["metrics"] == {"tenure": 3, "risk": 0.5, "churned": True}
    assert predictions[first["uuid"]]["modelCrn"] == "model.churn"
    assert predictions[first["uuid"]]["modelBuildCrn"] == "7"
    assert predictions[first["uuid"]]["modelDeploymentCrn"] == "model.churn/deployments/1"
    assert before <= predictions[first["uuid"]]["startTimeStampMs"] <= after
    (aggregate,) = [e for e in entries if e["predictionUuid"] is None]
    assert aggregate["metrics"] == {"auc": 0.9}
    assert (aggregate["startTimeStampMs"], aggregate["endTimeStampMs"]) == (before, after)
    by_deployment = viewer.read_metrics(deployment="model.churn/deployments/1", build="7")
    assert len(by_deployment["metrics"]) == 3


def test_metrics_tracked_before_a_model_exception_are_kept(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store)
    reply = serving.call_model(proxy, KEY, {"tenure": 5, "fail": True})
    assert reply.status == 500
    (entry,) = MetricsClient(proxy.url, VIEWER).read_metrics(model="model.churn")["metrics"]
    assert entry["predictionUuid"] == reply.body["uuid"]
    assert entry["metrics"] == {"tenure": 5, "risk": 0.5}


def test_refusals_are_clear_and_lose_nothing(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store)
    uuid = serving.call_model(proxy, KEY, {"tenure": 3}).body["uuid"]
    owner, viewer, outsider = (MetricsClient(proxy.url, k) for k in (OWNER, VIEWER, OUTSIDER))
    cases = [
        (lambda: MetricsClient(proxy.url, "wrong").read_metrics(model="model.churn"), "401: auth.invalid"),
        (lambda: viewer.track_delayed_metrics({"y": 1}, uuid), "403: auth.forbidden"),
        (lambda: outsider.track_delayed_metrics({"y": 1}, uuid), "belongs to project 'churn'"),
        (lambda: outsider.read_metrics(model="model.churn"), "not a collaborator of project 'churn'"),
        (lambda: owner.track_delayed_metrics({"y": 1}, "no-such-uuid"), "404: prediction.not_found"),
        (lambda: owner.read_metrics(model="model.nope"), "404: model.not_found"),
        (lambda: viewer.track_aggregate_metrics({"auc": 1}, 0, 10, model="model.churn"), "viewer of project"),
    ]
    for call, message in cases:
        with pytest.raises(MetricsError, match=message):
            call()
    raw = serving.http(
        "POST",
        proxy.url + "/metrics/read",
        {"model": "model.churn", "start_timestamp_ms": 10, "end_timestamp_ms": 5},
        {"Authorization": f"Bearer {VIEWER}"},
    )
    assert raw.status == 400
    assert "before start_timestamp_ms" in raw.body["errors"]["request.invalid"]
    (entry,) = viewer.read_metrics(model="model.churn")["metrics"]
    assert entry["metrics"] == {"tenure": 3, "risk": 0.5}


def test_a_model_tracking_nothing_stores_nothing(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store, function="plain")
    reply = serving.call_model(proxy, KEY, {"x": 1})
    assert reply.status == 200 and reply.body["response"] == {"x": 1}
    assert MetricsClient(proxy.url, VIEWER).read_metrics(model="model.churn") == {"metrics": []}


def test_without_a_usable_store_predictions_are_answered_and_the_reason_given(serving, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proxy = start(serving, tmp_path, {"url": f"sqlite:{blocker / 'metrics.db'}"})
    reply = serving.call_model(proxy, KEY, {"tenure": 3})
    assert reply.status == 200 and reply.body["response"]["prediction"] == {"risk": 0.5}
    with pytest.raises(MetricsError, match="503: metrics.store_unavailable: cannot open the metrics store"):
        MetricsClient(proxy.url, VIEWER).read_metrics(model="model.churn")


def test_a_refused_write_reaches_the_caller_as_a_header_on_the_normal_answer(serving, tmp_path, monkeypatch):
    monkeypatch.delenv("CMLPLAN_TEST_NO_SUCH_DSN", raising=False)
    proxy = start(serving, tmp_path, {"dsn_env": "CMLPLAN_TEST_NO_SUCH_DSN"})
    body = json.dumps({"accessKey": KEY, "request": {"tenure": 3}}).encode()
    request = urllib.request.Request(proxy.url + "/model", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as reply:
        assert reply.status == 200
        assert json.loads(reply.read())["response"]["prediction"] == {"risk": 0.5}
        assert "CMLPLAN_TEST_NO_SUCH_DSN is not set" in reply.headers["x-cmlplan-metrics-error"]
        assert reply.headers["x-cmlplan-metrics"] is None  # the replica's header is not forwarded
    assert "CMLPLAN_TEST_NO_SUCH_DSN is not set" in proxy.output()


def test_timestamps_are_whole_milliseconds_within_what_the_store_holds(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store)
    serving.call_model(proxy, KEY, {"tenure": 3})

    def read(low, high):
        return serving.http(
            "POST", proxy.url + "/metrics/read", {"model": "model.churn", "start_timestamp_ms": low, "end_timestamp_ms": high},
            {"Authorization": f"Bearer {VIEWER}"},
        )  # fmt: skip

    whole = read(0.0, 4.0e12)  # JSON has one number type: a whole float is a whole number of ms
    assert whole.status == 200 and len(whole.body["metrics"]) == 1
    for low, high, why in ((0, 4.1e25, "end_timestamp_ms"), (0.5, 10, "start_timestamp_ms"), (-1, 10, "start_timestamp_ms"),
                            (0, 2**63, "end_timestamp_ms"), (True, 10, "start_timestamp_ms")):  # fmt: skip
        refused = read(low, high)
        assert refused.status == 400, (low, high, refused.body)
        assert refused.body["errors"]["request.invalid"].startswith(f"{why} must be milliseconds since the epoch")


def test_an_answered_prediction_is_stored_even_if_the_proxy_is_killed_right_after(serving, tmp_path, store):
    proxy = start(serving, tmp_path, store)
    replies = [serving.call_model(proxy, KEY, {"tenure": t}) for t in range(20)]
    assert all(r.status == 200 and "x-cmlplan-metrics-error" not in r.raw.decode() for r in replies)
    exported = serving.http("GET", proxy.url + "/metrics").raw.decode()
    counts = dict(line.split() for line in exported.splitlines() if line.startswith("cmlplan_store_"))
    assert float(counts["cmlplan_store_writes_total"]) >= 20 and float(counts["cmlplan_store_commits_total"]) >= 1
    proxy.popen.kill()  # kill -9: nothing is flushed on the way out
    proxy.popen.wait(timeout=10)
    kept = open_store(store["url"])
    stored = {u for (u,) in kept.execute("SELECT uuid FROM predictions UNION ALL SELECT uuid FROM inbox").fetchall()}
    kept.close()
    assert {r.body["uuid"] for r in replies} <= stored


def test_a_read_of_thousands_of_predictions_arrives_whole(serving, tmp_path):
    """Megabytes of JSON: the answer is written as head and body (no copy), and arrives intact."""
    path = tmp_path / "metrics.db"
    seeded = open_store(f"sqlite:{path}")
    seeded.migrate()
    seeded.insert_predictions(
        [
            PredictionRow(f"u{i:05d}", "churn", "model.churn", "model.churn/deployments/1", "7", "churn-r0",
                          1_000 + i, json.dumps({"tenure": i, "note": "x" * 200}))  # fmt: skip
            for i in range(4000)
        ]
    )
    seeded.commit()
    seeded.close()
    proxy = start(serving, tmp_path, {"url": f"sqlite:{path}"})
    read = MetricsClient(proxy.url, VIEWER).read_metrics(model="model.churn", start_timestamp_ms=0)
    entries = read["metrics"]
    assert [e["predictionUuid"] for e in entries] == [f"u{i:05d}" for i in range(4000)]
    assert entries[3999]["metrics"] == {"tenure": 3999, "note": "x" * 200}
    assert serving.call_model(proxy, KEY, {"tenure": 3}).status == 200  # the connection's next answer is whole too
