"""The serving proxy under malformed HTTP and JSON, against real proxy and replica processes.

Each hostile request gets its 4xx (or, where HTTP framing itself is broken, a closed
connection) and the proxy answers a normal call right after. Content type is not checked: like
CML, the proxy accepts any Content-Type whose body is the JSON call (``text/plain`` works), and a
body that is not JSON (form-encoded, say) is a 400 whatever its type.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow

KEY = "mak_hostile-access-key"
LIMIT = 8192  # max_request_bytes of these proxies


@pytest.fixture
def proxy(serving: Any) -> Any:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
        max_request_bytes=LIMIT,
    )
    return serving.proxy(routes)


def _port(proxy: Any) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def _assert_still_serving(serving: Any, proxy: Any) -> None:
    reply = serving.call_model(proxy, KEY, {"a": 2, "b": 3}, timeout=10)
    assert reply.status == 200, reply.raw
    assert reply.body["response"] == 5
    assert proxy.popen.poll() is None


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    """Bytes until the peer closes or one complete response (headers + Content-Length) arrived."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return data
    return data


def _raw(proxy: Any, payload: bytes, *, half_close: bool = False, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=timeout) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        return _read_response(sock, time.monotonic() + timeout)


def _status(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])


def _error_body(response: bytes) -> dict[str, Any]:
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    assert body["success"] is False and len(body["errors"]) == 1, body
    return body


def _post(body: bytes, *, content_type: str = "application/json", extra: str = "") -> bytes:
    return (
        f"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


def _call(request: Any = None) -> bytes:
    return json.dumps({"accessKey": KEY, "request": request if request is not None else {"a": 1, "b": 1}}).encode()


def test_truncated_body_then_close(serving: Any, proxy: Any) -> None:
    head = b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    response = _raw(proxy, head + _call()[:20], half_close=True)
    # the client closed mid-body: nobody to answer (499 in metrics), or a 400; never a 5xx
    assert response == b"" or _status(response) == 400, response
    # and fully closing mid-body
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        sock.sendall(head + b'{"accessKey"')
    _assert_still_serving(serving, proxy)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"])
def test_any_content_type_holding_json_is_accepted(serving: Any, proxy: Any, content_type: str) -> None:
    response = _raw(proxy, _post(_call({"a": 20, "b": 22}), content_type=content_type))
    assert _status(response) == 200, response
    assert json.loads(response.partition(b"\r\n\r\n")[2])["response"] == 42


@pytest.mark.parametrize(
    "body",
    [b"accessKey=" + KEY.encode() + b"&request=%7B%7D", b"a=1&b=2&&&==%ZZ", b"<xml/>", b"", b"\x00" * 100],
)
def test_form_encoded_or_other_garbage_is_400(serving: Any, proxy: Any, body: bytes) -> None:
    response = _raw(proxy, _post(body, content_type="application/x-www-form-urlencoded"))
    assert _status(response) == 400, response
    assert "request.invalid" in _error_body(response)["errors"]
    _assert_still_serving(serving, proxy)


def test_huge_header_is_431(serving: Any, proxy: Any) -> None:
    big = "X-Big: " + "a" * 65536 + "\r\n"
    response = _raw(proxy, _post(_call(), extra=big), timeout=10)
    # 431 with the JSON error, or (rarely) a reset that beat the answer; never a crash or a 5xx
    assert response == b"" or _status(response) == 431, response
    if response:
        assert "request.headers_too_large" in _error_body(response)["errors"]
    many = "".join(f"X-H{i}: {'b' * 60}\r\n" for i in range(1100))  # ~75 KB in many headers
    response = _raw(proxy, _post(_call(), extra=many), timeout=10)
    assert response == b"" or _status(response) == 431, response
    long_url = b"POST /model?accessKey=" + b"k" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    response = _raw(proxy, long_url, timeout=10)
    assert response == b"" or _status(response) == 431, response
    _assert_still_serving(serving, proxy)


def test_a_head_trickling_in_is_cut_off_at_the_limit(serving: Any, proxy: Any) -> None:
    response = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        sock.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\n")
        for index in range(200):  # up to 200 KB, 1 KB at a time
            try:
                sock.sendall(f"X-{index}: {'c' * 1000}\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1000
            sock.settimeout(0.005)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            response += data
            if not data or b"\r\n\r\n" in response:
                break
    assert response == b"" or _status(response) == 431, response
    assert sent <= 48_000, f"the proxy buffered {sent} header bytes"
    _assert_still_serving(serving, proxy)


def test_headers_under_the_limit_and_pipelined_bodies_are_fine(serving: Any, proxy: Any) -> None:
    headers = "".join(f"X-H{i}: {'b' * 60}\r\n" for i in range(300))  # ~20 KB
    response = _raw(proxy, _post(_call({"a": 1, "b": 1}), extra=headers))
    assert _status(response) == 200, response
    # two pipelined requests in one write, the first with a body near the limit: both answered
    padded = json.dumps({"accessKey": KEY, "request": {"a": 1, "b": 2}, "pad": "x" * (LIMIT - 100)}).encode()
    first = (
        f"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: {len(padded)}\r\n\r\n".encode() + padded
    )
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as sock:
        sock.sendall(first + _post(_call({"a": 2, "b": 2})))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 2, data


@pytest.mark.parametrize("half_close", [False, True])
def test_thousands_of_pipelined_requests_in_one_write_are_all_answered_in_order(
    serving: Any, proxy: Any, half_close: bool
) -> None:
    """Each head is small: together they are far past the 32 KiB head limit, which is per request."""
    def post(body: bytes) -> bytes:  # kept alive, unlike _post
        return b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    calls = []
    for i in range(1500):
        calls.append(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        calls.append(post(_call({"a": i, "b": 1})) if i % 100 == 0 else post(b'{"accessKey": "nope", "request": 1}'))
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as sock:
        sock.sendall(b"".join(calls))
        if half_close:  # printf ... | nc: the client says it is done, and still reads every answer
            sock.shutdown(socket.SHUT_WR)
        data = b""
        deadline = time.monotonic() + 30
        while data.count(b"HTTP/1.1 ") < len(calls) and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert len(statuses) == len(calls)
    assert statuses == [200 if i % 2 == 0 or i % 200 == 1 else 404 for i in range(len(calls))]
    _assert_still_serving(serving, proxy)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # over the limit anyway: 413 is fine too
        b"[" * 8000,
        b'{"accessKey": "' + KEY.encode() + b'", "request": ' + b"[" * 8000 + b"]" * 8000 + b"}",
        b'{"accessKey": "' + KEY.encode() + b'", "request": ' + b'{"a":' * 1300 + b"1" + b"}" * 1300 + b"}",
    ],
    ids=["100k-open", "8k-open", "8k-balanced-request", "1300-objects"],
)
def test_deeply_nested_json_is_400_not_500(serving: Any, proxy: Any, body: bytes) -> None:
    response = _raw(proxy, _post(body))
    assert _status(response) in (400, 413), response
    if _status(response) == 400:
        assert "request.invalid" in _error_body(response)["errors"]
    _assert_still_serving(serving, proxy)


def test_nesting_the_replica_can_take_still_works(serving: Any, proxy: Any) -> None:
    """Moderate nesting passes through to the model (which then fails on its own terms)."""
    response = _raw(proxy, _post(_call([[[[[[[[[[1]]]]]]]]]])))
    assert _status(response) in (200, 500), response


def test_huge_numbers_are_400(serving: Any, proxy: Any) -> None:
    body = b'{"accessKey": "' + KEY.encode() + b'", "request": {"a": ' + b"9" * 5000 + b', "b": 1}}'
    response = _raw(proxy, _post(body))
    assert _status(response) == 400, response
    _assert_still_serving(serving, proxy)


def test_slow_chunked_body_over_the_limit_is_413_as_soon_as_it_passes(serving: Any, proxy: Any) -> None:
    head = b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1 KB of JSON whitespace
    response = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5) as sock:
        sock.sendall(head)
        started = time.monotonic()
        for _ in range(3 * LIMIT // 1024):  # bounded: three times the limit at most
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1024
            sock.settimeout(0.05)  # 1 KB every 50 ms, and look for an early answer meanwhile
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            response += data
            if not data or b"\r\n\r\n" in response:
                break
        elapsed = time.monotonic() - started
        response += _read_response(sock, time.monotonic() + 2)
    assert _status(response) == 413, response
    assert "request.too_large" in _error_body(response)["errors"]
    assert sent <= LIMIT + 2 * 1024, f"the proxy read {sent} bytes before refusing"
    assert elapsed < 10
    _assert_still_serving(serving, proxy)


def test_declared_content_length_over_the_limit_is_413_at_once(serving: Any, proxy: Any) -> None:
    head = f"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * LIMIT}\r\n\r\n".encode()
    started = time.monotonic()
    response = _raw(proxy, head, timeout=5)
    assert _status(response) == 413, response
    assert time.monotonic() - started < 2
    _assert_still_serving(serving, proxy)


@pytest.mark.parametrize(
    "body",
    [
        b'{"accessKey": "' + KEY.encode() + b'", "request": {"a": "\xff\xfe\xc3"}}',
        b"\xff\xfe\x00\x00garbage",
        b'{"accessKey": "\xed\xa0\x80", "request": 1}',  # an encoded lone surrogate
        b'\xef\xbb\xbf{"accessKey": "k", "request": 1}',  # a UTF-8 byte order mark
        '{"accessKey": "k", "request": 1}'.encode("utf-16"),
    ],
)
def test_invalid_utf8_is_400(serving: Any, proxy: Any, body: bytes) -> None:
    response = _raw(proxy, _post(body))
    assert _status(response) == 400, response
    _assert_still_serving(serving, proxy)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"request": 1}', 400),  # no access key
        (b'{"accessKey": 12, "request": 1}', 400),
        (b'{"accessKey": ["x"], "request": 1}', 400),
        (b'{"accessKey": "", "request": 1}', 400),
        (b'{"accessKey": "nope"}', 400),  # no request
        (b'{"accessKey": "nope", "request": 1}', 404),
        (b'{"accessKey": "\\ud800", "request": 1}', 400),  # an escaped lone surrogate is not Unicode
        (b'{"accessKey": "\\u0000' + KEY.encode() + b'", "request": 1}', 404),
        (b"[1, 2]", 400),
        (b'"just a string"', 400),
        (b"NaN", 400),
        (b'{"accessKey": "' + KEY.encode() + b'", "request": NaN}', 400),  # NaN is not JSON
        (b'{"accessKey": "' + KEY.encode() + b'", "request": [Infinity]}', 400),
        (b'{"accessKey": "' + KEY.encode() + b'", "request": {"x": -Infinity}}', 400),
    ],
)
def test_malformed_calls_get_their_4xx(serving: Any, proxy: Any, body: bytes, status: int) -> None:
    response = _raw(proxy, _post(body))
    assert _status(response) == status, response
    error = _error_body(response)
    if status == 400:
        assert "request.invalid" in error["errors"], error
    _assert_still_serving(serving, proxy)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/model", 405),
        ("PUT", "/model", 405),
        ("DELETE", "/model", 405),
        ("POST", "/healthz", 405),
        ("POST", "/metrics", 405),
        ("GET", "/", 404),
        ("GET", "/model/", 404),
        ("POST", "/predict", 404),
        ("GET", "/../../etc/passwd", 404),
        ("GET", "/%00", 404),
    ],
)
def test_unknown_paths_and_wrong_methods(serving: Any, proxy: Any, method: str, path: str, status: int) -> None:
    response = _raw(proxy, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert _status(response) == status, response
    _error_body(response)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
        b"\x00" * 4096,
        b"GET\r\n\r\n",
        b"POST /model HTTP/9.9\r\n\r\n",
        b"POST /model HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /model HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /model HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n",
        b"\r\n" * 10000,
        b"SSH-2.0-OpenSSH_9.0\r\n",
        b"BREW /model HTTP/1.1\r\nHost: x\r\n\r\n",  # not an HTTP method
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",  # not ASCII in the path
        b"GET /model HTTP/1.1\r\nHost: x\r\nX: \x00\x01\r\n\r\n",
    ],
)
def test_raw_garbage_is_closed_or_400(serving: Any, proxy: Any, garbage: bytes) -> None:
    # no half-close: the proxy answers and closes; a half-close adds nothing here
    response = _raw(proxy, garbage, timeout=2)
    if garbage.startswith(b"\r\n"):  # the parser skips blank lines before a request: it just waits
        assert response == b"", response
    else:
        assert _status(response) == 400, response  # uvicorn's "Invalid HTTP request received.", then close
    _assert_still_serving(serving, proxy)


def test_many_half_open_connections_do_not_block_a_normal_call(serving: Any, proxy: Any) -> None:
    sockets: list[socket.socket] = []
    try:
        for index in range(200):
            sock = socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5)
            sockets.append(sock)
            if index % 3 == 1:
                sock.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            elif index % 3 == 2:
                sock.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # body never finished
        started = time.monotonic()
        _assert_still_serving(serving, proxy)
        assert time.monotonic() - started < 2
        health = serving.http("GET", proxy.url + "/healthz", timeout=5)
        assert health.status == 200
    finally:
        for sock in sockets:
            sock.close()
    _assert_still_serving(serving, proxy)


def test_integers_past_64_bits_reach_the_model_exactly(serving: Any, proxy: Any) -> None:
    response = _raw(proxy, _post(_call({"a": 10**30, "b": 1})))
    assert _status(response) == 200, response
    assert json.loads(response.partition(b"\r\n\r\n")[2])["response"] == 10**30 + 1
    # the exact-integer path is as strict about NaN as the fast one
    body = b'{"accessKey": "' + KEY.encode() + b'", "request": {"a": ' + b"1" * 30 + b', "b": NaN}}'
    response = _raw(proxy, _post(body))
    assert _status(response) == 400, response
    assert "request.invalid" in _error_body(response)["errors"]
