"""The proxy against slow, large, vanishing and odd clients, each against a real proxy process.

- slow clients: head/body read deadlines, the keep-alive idle timeout, and the connection cap
  below the file-descriptor limit (1,100 slow connections at a 1,024 fd limit);
- 413 that urllib, http.client and requests see (they send the whole body before reading);
- clients that hang up while queued leave the line, and their request never reaches a replica;
- strict input: two Authorization headers, and an unexpected error answered 500 with the CML body.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import select
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

KEY = "ak-hardening-31337"
FIVE_MB = 5_000_000


def _port(proxy: Any) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def _connect(proxy: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(proxy)), timeout=5)


def _closed(sock: socket.socket) -> bool:
    """True once the proxy closed the connection (any answer it wrote before that is read and dropped)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:  # reset
        return True


def _assert_serving(serving: Any, proxy: Any) -> None:
    reply = serving.call_model(proxy, KEY, {"a": 2, "b": 3}, timeout=10)
    assert reply.status == 200, reply.raw
    assert reply.body["response"] == 5


# ---------------------------------------------------------------- slow clients


@pytest.fixture
def fd_headroom() -> None:
    """This test process itself holds 1,100+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192) if hard > 0 else 8192, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slow_headers_at_a_1024_fd_limit_cannot_starve_a_normal_client(
    serving: Any, fd_headroom: None
) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
        header_timeout=3.0,
        body_timeout=3.0,
    )
    proxy = serving.proxy(routes, fd_limit=1024)
    slow: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(1100):
            sock = _connect(proxy)
            sock.sendall(b"P")  # a head that trickles in, one byte at a time
            sock.setblocking(False)
            slow.append(sock)
        opened = time.monotonic() - started
        assert opened < 2.5, f"opening took {opened:.1f}s: the deadline test below would be meaningless"
        statuses = []
        trickle = b"OST /model HTTP/1.1\r\nHost: x\r\n"
        index = 0
        while time.monotonic() - started < 2.0:  # before the 3 s header deadline
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(trickle[index : index + 1])
            index += 1
            statuses.append(serving.call_model(proxy, KEY, {"a": 2, "b": 3}, timeout=5).status)
            time.sleep(0.1)
        assert statuses and set(statuses) == {200}, statuses
        still_open = sum(1 for sock in slow if not _closed(sock))
        # the cap (1024 less a reserve) pushed the oldest slow ones out; the rest wait for the deadline
        assert 700 <= still_open <= 1024 - 100, still_open
        deadline = time.monotonic() + 5.0  # 3 s deadline from each connection's start, swept every 0.5 s
        while time.monotonic() < deadline:
            still_open = sum(1 for sock in slow if not _closed(sock))
            if still_open == 0:
                break
            time.sleep(0.2)
        assert still_open == 0, f"{still_open} slow connections outlived the header deadline"
        assert time.monotonic() - started > 3.0
        _assert_serving(serving, proxy)
        metrics = serving.http("GET", proxy.url + "/metrics").raw.decode()
        assert 'cmlplan_proxy_requests_total{code="408",model="-"}' in metrics
    finally:
        for sock in slow:
            sock.close()
    assert proxy.popen.poll() is None
    assert "Too many open files" not in proxy.output()


def test_a_body_that_never_finishes_gets_408_at_the_body_deadline(serving: Any) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
        body_timeout=1.0,
    )
    proxy = serving.proxy(routes)
    with _connect(proxy) as sock:
        sock.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        data = b""
        while not data.endswith(b"}") and time.monotonic() - started < 5:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert json.loads(data.partition(b"\r\n\r\n")[2])["errors"].keys() == {"request.timeout"}
    assert 0.9 <= elapsed < 3.0, elapsed
    _assert_serving(serving, proxy)


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(serving: Any) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
        keepalive_timeout=1.0,
    )
    proxy = serving.proxy(routes)
    conn = http.client.HTTPConnection("127.0.0.1", _port(proxy), timeout=5)
    try:
        body = json.dumps({"accessKey": KEY, "request": {"a": 1, "b": 1}})
        for _ in range(3):  # kept alive between requests sent in time
            conn.request("POST", "/model", body)
            reply = conn.getresponse()
            assert reply.status == 200 and reply.getheader("connection") is None
            reply.read()
            time.sleep(0.3)
        started = time.monotonic()
        readable, _, _ = select.select([conn.sock], [], [], 5)
        assert readable and conn.sock.recv(1) == b"", "the idle connection was not closed"
        assert 0.5 <= time.monotonic() - started < 3.0
    finally:
        conn.close()


# ---------------------------------------------------------------- 413 every client sees


@pytest.fixture
def big_proxy(serving: Any) -> Any:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
        max_request_bytes=FIVE_MB,
    )
    return serving.proxy(routes)


def _body(size: int) -> bytes:
    head = b'{"accessKey": "' + KEY.encode() + b'", "request": {"a": "'
    tail = b'", "b": ""}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _with_urllib(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _with_http_client(url: str, body: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").removesuffix("/model").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/model", body, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def _with_requests(url: str, body: bytes) -> tuple[int, bytes]:
    requests = pytest.importorskip("requests")
    reply = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    return reply.status_code, reply.content


def _with_requests_chunked(url: str, body: bytes) -> tuple[int, bytes]:
    requests = pytest.importorskip("requests")
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no length: chunked upload
    reply = requests.post(url, data=pieces, headers={"Content-Type": "application/json"}, timeout=30)
    return reply.status_code, reply.content


@pytest.mark.parametrize("size", [FIVE_MB + 1, 6_000_000, 20_000_000], ids=["5MB+1", "6MB", "20MB"])
@pytest.mark.parametrize(
    "client",
    [_with_urllib, _with_http_client, _with_requests, _with_requests_chunked],
    ids=["urllib", "http.client", "requests", "requests-chunked"],
)
def test_every_client_sees_the_413(serving: Any, big_proxy: Any, client: Any, size: int) -> None:
    status, raw = client(big_proxy.url + "/model", _body(size))
    assert status == 413, raw[:300]
    assert json.loads(raw) == {
        "success": False,
        "errors": {"request.too_large": f"request body exceeds {FIVE_MB} bytes"},
    }
    _assert_serving(serving, big_proxy)


def test_a_body_at_the_limit_is_served(serving: Any, big_proxy: Any) -> None:
    body = _body(FIVE_MB)
    status, raw = _with_urllib(big_proxy.url + "/model", body)
    assert status == 200, raw[:300]
    assert json.loads(raw)["response"] == json.loads(body)["request"]["a"]  # add concatenates the strings


# ---------------------------------------------------------------- clients that hang up while queued


def _send_call(proxy: Any, request: dict[str, Any]) -> socket.socket:
    body = json.dumps({"accessKey": KEY, "request": request}).encode()
    sock = _connect(proxy)
    sock.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def _answer(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length" and len(body) >= int(value):
                return data


def test_clients_that_hang_up_while_queued_never_reach_the_replica(serving: Any, tmp_path: Path) -> None:
    replica = serving.replica("logged")
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {KEY: serving.model_entry("model.iris/logged", [replica])},
        busy_timeout=3.0,
    )
    proxy = serving.proxy(routes)
    log = tmp_path / "calls.log"
    first = _send_call(proxy, {"log": str(log), "tag": "first", "sleep": 1.5})
    serving.wait_until(lambda: log.exists() and "first" in log.read_text(), timeout=5)
    gone = [_send_call(proxy, {"log": str(log), "tag": f"gone-{i}", "sleep": 1.0}) for i in range(3)]
    time.sleep(0.2)  # they are queued behind "first"
    for sock in gone:
        sock.close()
    time.sleep(0.2)
    live = _send_call(proxy, {"log": str(log), "tag": "live", "sleep": 0.0})
    assert b"HTTP/1.1 200 " in _answer(first, 10)
    reply = _answer(live, 10)
    # the three gone calls would have taken 3 s more: past the busy timeout, this would be a 429
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["response"] == "live"
    time.sleep(0.5)
    assert log.read_text().split() == ["first", "live"]
    metrics = serving.http("GET", proxy.url + "/metrics").raw.decode()
    assert 'cmlplan_proxy_requests_total{code="499",model="model.iris/logged"} 3.0' in metrics
    first.close()
    live.close()


def test_at_the_cap_with_every_connection_answering_a_new_one_gets_503_overloaded(
    serving: Any, tmp_path: Path
) -> None:
    """No connection can be pushed out when each has a request running: the newcomer is told so."""
    replica = serving.replica("logged")
    routes = serving.write_routes(
        tmp_path / "routes.json",
        {KEY: serving.model_entry("model.iris/logged", [replica])},
        busy_timeout=20.0,
    )
    proxy = serving.proxy(routes, fd_limit=144)  # 144 descriptors less the reserve of 128: a cap of 16
    log = tmp_path / "calls.log"
    first = _send_call(proxy, {"log": str(log), "tag": "first", "sleep": 2.0})
    serving.wait_until(lambda: log.exists() and "first" in log.read_text(), timeout=5)
    queued = [_send_call(proxy, {"log": str(log), "tag": f"q{i}", "sleep": 0.0}) for i in range(15)]
    time.sleep(0.3)  # all 16 connections have a request running: at the replica or in its line
    with _connect(proxy) as newcomer:
        reply = _answer(newcomer, 5)
        assert newcomer.recv(1) == b""  # and closed
    assert reply.startswith(b"HTTP/1.1 503 "), reply
    assert b"connection: close" in reply.lower()
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["errors"].keys() == {"proxy.overloaded"}
    for sock in [first, *queued]:  # every request already in is answered, in its turn
        answered = _answer(sock, 15)
        assert answered.startswith(b"HTTP/1.1 200 "), answered
        sock.close()
    assert log.read_text().split() == ["first", *(f"q{i}" for i in range(15))]
    _assert_serving_key(serving, proxy, {"log": str(log), "tag": "after", "sleep": 0.0})
    metrics = serving.http("GET", proxy.url + "/metrics").raw.decode()
    assert 'cmlplan_proxy_requests_total{code="503",model="-"} 1.0' in metrics


def _assert_serving_key(serving: Any, proxy: Any, request: dict[str, Any]) -> None:
    reply = serving.call_model(proxy, KEY, request, timeout=10)
    assert reply.status == 200, reply.raw


# ---------------------------------------------------------------- strict input


def test_two_authorization_headers_are_400(serving: Any) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
    )
    proxy = serving.proxy(routes)
    body = json.dumps({"accessKey": KEY, "request": {"a": 1, "b": 1}}).encode()
    for headers in (
        b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        b"authorization: x\r\nAUTHORIZATION: x\r\n",
    ):
        with _connect(proxy) as sock:
            sock.sendall(
                b"POST /model HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
                % (headers, len(body), body)
            )
            reply = _answer(sock, 5)
        assert reply.startswith(b"HTTP/1.1 400 "), reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["errors"].keys() == {"request.invalid"}
    _assert_serving(serving, proxy)


# A proxy process with a fault injected: parse_call fails on a marker in the body, and the
# request reader fails on one path, as a bug there would.
FAULTY_PROXY = """
import sys
from cmlplan.serving.proxy import __main__ as entry, call, handler

real_parse, real_handle = call.parse_call, handler.Handler.handle

def parse_call(body, query):
    if b"explode" in body:
        raise RuntimeError("injected fault")
    return real_parse(body, query)

def handle(self, conn, request):
    if request.url == b"/explode":
        raise KeyError("injected fault")
    return real_handle(self, conn, request)

call.parse_call = parse_call
handler.Handler.handle = handle
entry.main(sys.argv[1:])
"""


def test_an_unexpected_error_is_a_500_with_the_cml_body_and_counted(serving: Any) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
    )
    proxy = serving.proxy(routes, launcher=["-c", FAULTY_PROXY])
    reply = serving.call_model(proxy, KEY, {"a": "explode", "b": ""})
    assert reply.status == 500
    assert reply.body == {
        "success": False,
        "errors": {"proxy.internal": "the proxy failed on this request; see its log"},
    }
    _assert_serving(serving, proxy)
    with _connect(proxy) as sock:
        sock.sendall(b"GET /explode HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = _answer(sock, 5)
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["errors"].keys() == {"proxy.internal"}
    _assert_serving(serving, proxy)
    metrics = serving.http("GET", proxy.url + "/metrics").raw.decode()
    assert "cmlplan_proxy_internal_errors_total 2.0" in metrics
    assert 'cmlplan_proxy_requests_total{code="500",model="-"} 2.0' in metrics
    assert "injected fault" in proxy.output()  # logged with its traceback, for the operator


WITHOUT_ORJSON = """
import sys
sys.modules["orjson"] = None  # as if it were not installed: the codec falls back to the stdlib
from cmlplan.serving.proxy import __main__ as entry
entry.main(sys.argv[1:])
"""


def test_without_orjson_the_proxy_is_as_strict(serving: Any) -> None:
    replica = serving.replica("add")
    routes = serving.write_routes(
        serving.tmp / "routes.json",
        {KEY: serving.model_entry("model.iris/add", [replica])},
    )
    proxy = serving.proxy(routes, launcher=["-c", WITHOUT_ORJSON])
    _assert_serving(serving, proxy)
    for value in (b"NaN", b"Infinity", b"-Infinity", b"[1, NaN]"):
        body = b'{"accessKey": "' + KEY.encode() + b'", "request": ' + value + b"}"
        reply = serving.http("POST", proxy.url + "/model", body, {"Content-Type": "application/json"})
        assert reply.status == 400, reply.raw
        assert reply.body["errors"].keys() == {"request.invalid"}
