"""A store that stops taking writes stalls only the predictions waiting to be stored, never the
proxy's event loop: while PostgreSQL holds the inbox (where tracked predictions are written)
locked, a tracked prediction waits (it is durable before it is answered) and every other request
is answered; once the lock goes, the tracked one is answered and stored. Ordering, not timing,
is asserted."""

import json
import threading

import psycopg

from cmlplan.serving.metrics import MetricsClient

TRACKED, PLAIN, VIEWER = "ak-stall-tracked", "ak-stall-plain", "api-stall-viewer"
MODELS = """
import cdsw

@cdsw.model_metrics
def tracked(args):
    cdsw.track_metric("x", args["x"])
    return args["x"]

def plain(args):
    return args["a"] + args["b"]
"""


def test_a_locked_store_stalls_only_the_prediction_being_stored(serving, tmp_path, postgres_dsn):
    source = tmp_path / "src"
    source.mkdir()
    (source / "predict.py").write_text(MODELS)
    tracked = serving.replica("tracked", "tracked-r0", source=source)
    plain = serving.replica("plain", "plain-r0", source=source)
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {
            TRACKED: serving.model_entry("model.stall/tracked", [tracked], project="stall"),
            PLAIN: serving.model_entry("model.stall/plain", [plain], project="stall"),
        },
        api_keys={VIEWER: {"name": "viewer", "user": "bob"}},
        projects={"stall": {"bob": "viewer"}},
        request_timeout=60.0,
    )
    document = json.loads(routes.read_text())
    document["proxy"]["metrics_store"] = {"url": postgres_dsn}
    routes.write_text(json.dumps(document))
    proxy = serving.proxy(routes)
    assert serving.call_model(proxy, TRACKED, {"x": 1}).status == 200  # the schema exists, one row stored

    lock = psycopg.connect(postgres_dsn)
    lock.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")  # held until rollback
    answered = threading.Event()
    result = {}

    def call_tracked():
        result["reply"] = serving.call_model(proxy, TRACKED, {"x": 2}, timeout=60)
        answered.set()

    waiting = threading.Thread(target=call_tracked)
    try:
        waiting.start()
        serving.wait_until(
            lambda: lock.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'inbox'::regclass AND NOT granted"
            ).fetchone()[0] > 0,
            timeout=20,
        )  # the proxy's ingest process is now blocked on the lock
        for i in range(20):  # the event loop is free: other requests are answered meanwhile
            assert serving.call_model(proxy, PLAIN, {"a": i, "b": 1}).body["response"] == i + 1
        assert serving.http("GET", proxy.url + "/healthz").status == 200
        assert not answered.is_set()  # the tracked prediction waits for its row to be durable
    finally:
        lock.rollback()
        lock.close()
    waiting.join(timeout=60)
    assert answered.is_set() and result["reply"].status == 200 and result["reply"].body["response"]["prediction"] == 2
    stored = MetricsClient(proxy.url, VIEWER).read_metrics(model="model.stall/tracked")["metrics"]
    assert [e["metrics"] for e in stored] == [{"x": 1}, {"x": 2}]
