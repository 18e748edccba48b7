"""The proxy's request path, one status code at a time, from real processes."""

import json
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "ak-add-2f9c1e"
AUTH_KEY = "ak-auth-77aa01"
STOPPED_KEY = "ak-stopped-1b2c"
EMPTY_KEY = "ak-empty-9d8e"
BOOM_KEY = "ak-boom-4c4c"
ALICE = "api-alice-secret-5e6f"
EXPIRED = "api-expired-secret-7a7a"
BOB = "api-bob-secret-8b8b"
MAX_BYTES = 4096


@pytest.fixture
def proxy(serving, tmp_path: Path) -> Any:
    add = serving.replica("add", "add-1")
    boom = serving.replica("boom", "boom-1")
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {
            ACCESS_KEY: serving.model_entry("model.iris/add", [add]),
            AUTH_KEY: serving.model_entry("model.iris/add-auth", [add], authentication=True),
            STOPPED_KEY: serving.model_entry("model.iris/stopped", [add], stopped=True),
            EMPTY_KEY: serving.model_entry("model.iris/empty", []),
            BOOM_KEY: serving.model_entry("model.iris/boom", [boom]),
        },
        max_request_bytes=MAX_BYTES,
        api_keys={
            ALICE: {"name": "alice-ci", "user": "alice", "expires_at": "2099-01-01T00:00:00+00:00"},
            EXPIRED: {"name": "alice-old", "user": "alice", "expires_at": "2020-01-01T00:00:00+00:00"},
            BOB: {"name": "bob-ci", "user": "bob", "expires_at": None},
        },
        projects={"iris": {"alice": "viewer", "carol": "owner"}, "other": {"bob": "owner"}},
    )
    return serving.proxy(routes)


def error_code(reply: Any) -> str:
    assert reply.body["success"] is False, reply.body
    (code,) = reply.body["errors"]
    return code


def test_success_passes_the_replica_body_through(serving, proxy):
    reply = serving.call_model(proxy, ACCESS_KEY, {"a": 40, "b": 2})
    assert reply.status == 200
    assert reply.body["success"] is True and reply.body["response"] == 42
    assert reply.body["ReplicaID"] == "add-1" and reply.body["uuid"]
    assert reply.raw == json.dumps(reply.body).encode()  # the replica's own json.dumps, untouched


def test_access_key_in_query(serving, proxy):
    reply = serving.call_model(proxy, ACCESS_KEY, {"a": 1, "b": 2}, query=True)
    assert reply.status == 200 and reply.body["response"] == 3


def test_model_exception_is_passed_through(serving, proxy):
    reply = serving.call_model(proxy, BOOM_KEY, {})
    assert reply.status == 500
    assert reply.body["errors"] == {"model.exception": "ValueError: bad input"}
    assert reply.body["ReplicaID"] == "boom-1"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"accessKey": ACCESS_KEY}).encode(),
        json.dumps({"request": {}}).encode(),
    ],
    ids=["bad-json", "not-object", "no-request", "no-access-key"],
)
def test_bad_requests_are_400(serving, proxy, body):
    reply = serving.http("POST", proxy.url + "/model", body, {"Content-Type": "application/json"})
    assert reply.status == 400 and error_code(reply) == "request.invalid"


def test_unknown_access_key_is_404(serving, proxy):
    reply = serving.call_model(proxy, "ak-nobody", {"a": 1, "b": 2})
    assert reply.status == 404 and error_code(reply) == "model.not_found"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "auth.missing"),
        ({"Authorization": "Basic abc"}, 401, "auth.missing"),
        ({"Authorization": "Bearer api-unknown"}, 401, "auth.invalid"),
        ({"Authorization": f"Bearer {EXPIRED}"}, 403, "auth.expired"),
        ({"Authorization": f"Bearer {BOB}"}, 403, "auth.forbidden"),
    ],
    ids=["missing", "not-bearer", "unknown", "expired", "not-collaborator"],
)
def test_authentication_failures(serving, proxy, headers, status, code):
    reply = serving.call_model(proxy, AUTH_KEY, {"a": 1, "b": 2}, headers=headers)
    assert reply.status == status and error_code(reply) == code


def test_collaborator_with_valid_key_is_served(serving, proxy):
    reply = serving.call_model(
        proxy, AUTH_KEY, {"a": 1, "b": 2}, headers={"Authorization": f"Bearer {ALICE}"}
    )
    assert reply.status == 200 and reply.body["response"] == 3


def test_stopped_model_is_503(serving, proxy):
    reply = serving.call_model(proxy, STOPPED_KEY, {"a": 1, "b": 2})
    assert reply.status == 503 and error_code(reply) == "model.stopped"
    assert "stopped" in reply.body["errors"]["model.stopped"]


def test_model_without_replicas_is_503(serving, proxy):
    reply = serving.call_model(proxy, EMPTY_KEY, {"a": 1, "b": 2})
    assert reply.status == 503 and error_code(reply) == "model.unavailable"


def test_oversize_content_length_is_413(serving, proxy):
    big = {"accessKey": ACCESS_KEY, "request": {"a": "x" * MAX_BYTES, "b": ""}}
    reply = serving.http("POST", proxy.url + "/model", big, {"Content-Type": "application/json"})
    assert reply.status == 413 and error_code(reply) == "request.too_large"


def test_streamed_body_without_length_is_cut_off_at_the_limit(proxy):
    """Chunked upload that never ends: the proxy answers 413 once the limit is passed."""
    host, port = proxy.url.removeprefix("http://").split(":")
    chunk = b"x" * 1024
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /model HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        assert MAX_BYTES < sent <= MAX_BYTES + 4 * len(chunk), sent
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["errors"].keys() == {"request.too_large"}


def test_unknown_path_and_wrong_method(serving, proxy):
    missing = serving.http("GET", proxy.url + "/nowhere")
    assert missing.status == 404 and missing.body["success"] is False
    wrong = serving.http("GET", proxy.url + "/model")
    assert wrong.status == 405 and wrong.body["success"] is False


def test_logs_never_contain_keys(serving, proxy):
    serving.call_model(proxy, AUTH_KEY, {"a": 1, "b": 2}, headers={"Authorization": f"Bearer {BOB}"})
    serving.call_model(proxy, BOOM_KEY, {})
    serving.call_model(proxy, ACCESS_KEY, {"a": 1, "b": 2}, query=True)
    output = proxy.output()
    for secret in (ACCESS_KEY, AUTH_KEY, BOOM_KEY, ALICE, BOB, EXPIRED):
        assert secret not in output
