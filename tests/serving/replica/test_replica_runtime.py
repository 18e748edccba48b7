"""The replica process against the HTTP contract in docs/internals.md."""

import signal
import threading
import time
import uuid
from typing import Any

import pytest


def predict(serving: Any, proc: Any, request: Any, timeout: float = 15.0) -> Any:
    return serving.http("POST", proc.url + "/predict", request, {"Content-Type": "application/json"}, timeout)


def test_success_body_is_the_cml_shape(serving):
    replica = serving.replica("add", "add-1")
    reply = predict(serving, replica, {"a": 2, "b": 3})
    assert reply.status == 200
    assert set(reply.body) == {"success", "response", "ReplicaID", "uuid"}
    assert reply.body["success"] is True and reply.body["response"] == 5
    assert reply.body["ReplicaID"] == "add-1"
    uuid.UUID(reply.body["uuid"], version=4)
    assert predict(serving, replica, {"a": 1, "b": 1}).body["uuid"] != reply.body["uuid"]


def test_model_exception_is_500_and_replica_stays_up(serving):
    replica = serving.replica("boom", "boom-1")
    reply = predict(serving, replica, {"x": 1})
    assert reply.status == 500
    assert reply.body["success"] is False
    assert reply.body["errors"] == {"model.exception": "ValueError: bad input"}
    assert reply.body["ReplicaID"] == "boom-1" and reply.body["uuid"]
    assert "Traceback" in replica.output() and reply.body["uuid"] in replica.output()
    assert serving.http("GET", replica.url + "/healthz").status == 200
    assert predict(serving, replica, {"x": 2}).status == 500


def test_unserialisable_return_value_is_a_model_exception(serving):
    replica = serving.replica("as_set")
    reply = predict(serving, replica, {})
    assert reply.status == 500
    message = reply.body["errors"]["model.exception"]
    assert message.startswith("TypeError:") and "not JSON serialisable" in message


def test_bad_json_unknown_path_and_wrong_method(serving):
    replica = serving.replica("add")
    bad = serving.http("POST", replica.url + "/predict", b"{nope", {"Content-Type": "application/json"})
    assert bad.status == 400 and "request.invalid" in bad.body["errors"]
    missing = serving.http("GET", replica.url + "/nowhere")
    assert missing.status == 404 and missing.body["success"] is False
    wrong = serving.http("GET", replica.url + "/predict")
    assert wrong.status == 405 and wrong.body["success"] is False


def test_busy_replica_refuses_at_once_and_healthz_answers_during_prediction(serving):
    replica = serving.replica("slow", "slow-1")
    results: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: results.update(first=predict(serving, replica, {"sleep": 1.5})))
    worker.start()
    try:
        serving.wait_until(lambda: serving.http("GET", replica.url + "/healthz", timeout=1).body["busy"], 5)
        started = time.monotonic()
        health = serving.http("GET", replica.url + "/healthz", timeout=1)
        assert health.status == 200 and health.body == {"status": "ok", "replica_id": "slow-1", "busy": True}
        second = predict(serving, replica, {"sleep": 0})
        assert time.monotonic() - started < 0.5
        assert second.status == 429 and "replica.busy" in second.body["errors"]
    finally:
        worker.join(timeout=10)
    assert results["first"].status == 200 and results["first"].body["response"]["slept"] == 1.5
    assert serving.http("GET", replica.url + "/healthz").body["busy"] is False


@pytest.mark.parametrize(
    ("file_text", "function", "expected"),
    [
        (None, "add", "model file not found"),
        ("def add(args):\n    return 1\n", "predict", "function 'predict' not found"),
        ("import no_such_module_xyz\n", "add", "ModuleNotFoundError"),
    ],
)
def test_load_failure_exits_3_with_one_line(serving, tmp_path, file_text, function, expected):
    source = tmp_path / "broken"
    source.mkdir()
    if file_text is not None:
        (source / "predict.py").write_text(file_text)
    replica = serving.replica(function, "broken-1", wait=False, source=source)
    assert replica.popen.wait(timeout=20) == 3
    lines = [line for line in replica.output().splitlines() if "cannot load model" in line]
    assert len(lines) == 1 and expected in lines[0]


def test_memory_limit_turns_a_big_allocation_into_model_exception(serving):
    replica = serving.replica("hog", extra=["--memory-bytes", str(512 * 1024 * 1024)])
    reply = predict(serving, replica, {"bytes": 2 * 1024 * 1024 * 1024})
    assert reply.status == 500 and reply.body["errors"]["model.exception"].startswith("MemoryError")
    assert predict(serving, replica, {"bytes": 1024}).body["response"] == 1024


def test_sigterm_lets_the_inflight_prediction_finish(serving):
    replica = serving.replica("slow")
    results: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: results.update(reply=predict(serving, replica, {"sleep": 1.0})))
    worker.start()
    try:
        serving.wait_until(lambda: serving.http("GET", replica.url + "/healthz", timeout=1).body["busy"], 5)
        replica.signal(signal.SIGTERM)
    finally:
        worker.join(timeout=10)
    assert results["reply"].status == 200
    replica.popen.wait(timeout=10)
