"""The replica's own HTTP/1.1 server (replica/http.py): framing, keep-alive, pipelining and stopping.

Against a real replica process where the behaviour is the process's (signals, ports); in process
where a setting has to be small to be testable (the idle timeout).
"""

import asyncio
import json
import signal
import socket
import threading
import time
from typing import Any

import pytest

from cmlplan.serving.replica.app import ReplicaApp
from cmlplan.serving.replica.http import ReplicaServer, response
from cmlplan.serving.replica.worker import PredictionWorker


def _port(proc: Any) -> int:
    return int(proc.url.rsplit(":", 1)[1])


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /predict HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _read_responses(sock: socket.socket, count: int, timeout: float = 10.0) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` whole responses (content-length framed) from sock."""
    sock.settimeout(timeout)
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed after {len(answers)} answers: {buffer!r}")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buffer) < length:
            buffer += sock.recv(65536)
        answers.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return answers


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_one_connection_serves_request_after_request_and_pipelined_ones_in_order(serving):
    replica = serving.replica("add")
    with socket.create_connection(("127.0.0.1", _port(replica))) as sock:
        for a in range(3):
            sock.sendall(_post(json.dumps({"a": a, "b": 1}).encode()))
            [(status, _, body)] = _read_responses(sock, 1)
            assert status == 200 and json.loads(body)["response"] == a + 1
        pipelined = b"".join(_post(json.dumps({"a": a, "b": 10}).encode()) for a in range(5))
        sock.sendall(pipelined + b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n")
        answers = _read_responses(sock, 6)
    assert [json.loads(b)["response"] for _, _, b in answers[:5]] == [10, 11, 12, 13, 14]  # never 429 busy
    assert answers[5][0] == 200 and json.loads(answers[5][2])["busy"] is False


def test_thousands_of_requests_pipelined_behind_a_prediction_are_answered_in_order(serving):
    """Queued answers given at once (/healthz) are looped over, not recursed into, when the
    prediction ahead of them ends: no RecursionError however deep the pipeline."""
    replica = serving.replica("slow")
    count = 3000
    pipeline = _post(b'{"sleep": 0.5}') + b"GET /healthz HTTP/1.1\r\nHost: r\r\n\r\n" * count
    with socket.create_connection(("127.0.0.1", _port(replica))) as sock:
        sender = threading.Thread(target=sock.sendall, args=(pipeline,))
        sender.start()
        answers = _read_responses(sock, count + 1, timeout=30)
        sender.join(10)
    assert answers[0][0] == 200 and json.loads(answers[0][2])["response"]["slept"] == 0.5
    assert [a[0] for a in answers[1:]] == [200] * count
    assert "Traceback" not in replica.output()


def test_expect_100_continue_and_connection_close(serving):
    replica = serving.replica("add")
    with socket.create_connection(("127.0.0.1", _port(replica))) as sock:
        body = b'{"a": 4, "b": 5}'
        sock.sendall(_post(b"", b"Expect: 100-continue\r\n").replace(b"Content-Length: 0", b"Content-Length: 16"))
        sock.settimeout(5)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        [(status, _, answer)] = _read_responses(sock, 1)
        assert status == 200 and json.loads(answer)["response"] == 9
        sock.sendall(_post(body, b"Connection: close\r\n"))
        [(status, headers, _)] = _read_responses(sock, 1)
        assert status == 200 and headers["connection"] == "close"
        assert _closed(sock)


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.0\r\n", b"POST /predict HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n"],
)
def test_garbage_is_answered_400_and_closed_and_the_replica_serves_on(serving, garbage):
    replica = serving.replica("add")
    with socket.create_connection(("127.0.0.1", _port(replica))) as sock:
        sock.sendall(garbage)
        [(status, headers, body)] = _read_responses(sock, 1)
        assert status == 400 and headers["connection"] == "close" and b"request.invalid" in body
        assert _closed(sock)
    assert serving.http("POST", replica.url + "/predict", {"a": 1, "b": 2}).body["response"] == 3


def test_a_client_that_leaves_mid_prediction_frees_the_replica(serving):
    replica = serving.replica("slow")
    sock = socket.create_connection(("127.0.0.1", _port(replica)))
    sock.sendall(_post(b'{"sleep": 0.5}'))
    serving.wait_until(lambda: serving.http("GET", replica.url + "/healthz", timeout=1).body["busy"], 5)
    sock.close()
    serving.wait_until(lambda: not serving.http("GET", replica.url + "/healthz", timeout=1).body["busy"], 5)
    assert serving.http("POST", replica.url + "/predict", {"sleep": 0}).status == 200


def test_sigterm_closes_idle_connections_and_exits_0_at_once(serving):
    replica = serving.replica("add")
    idle = [socket.create_connection(("127.0.0.1", _port(replica))) for _ in range(3)]
    idle[0].sendall(_post(b'{"a": 1, "b": 1}'))
    _read_responses(idle[0], 1)
    started = time.monotonic()
    replica.signal(signal.SIGTERM)
    assert replica.popen.wait(timeout=10) == 0
    assert time.monotonic() - started < 3  # idle keep-alive connections do not hold the stop
    assert all(_closed(sock) for sock in idle)


def test_sigterm_answers_the_prediction_in_flight_with_connection_close(serving):
    replica = serving.replica("slow")
    with socket.create_connection(("127.0.0.1", _port(replica))) as sock:
        sock.sendall(_post(b'{"sleep": 1.0}'))
        serving.wait_until(lambda: serving.http("GET", replica.url + "/healthz", timeout=1).body["busy"], 5)
        replica.signal(signal.SIGTERM)
        [(status, headers, body)] = _read_responses(sock, 1)
        assert status == 200 and json.loads(body)["response"]["slept"] == 1.0
        assert headers["connection"] == "close"
    assert replica.popen.wait(timeout=10) == 0


def test_a_port_in_use_exits_3_with_one_line(serving, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        replica = serving.spawn(
            ["-m", "cmlplan.serving.replica", "--source", str(serving.write_models()), "--file", "predict.py",
             "--function", "add", "--host", "127.0.0.1", "--port", str(port), "--replica-id", "clash"],
            "clash", f"http://127.0.0.1:{port}",
        )  # fmt: skip
        assert replica.popen.wait(timeout=20) == 3
    finally:
        taken.close()
    lines = [line for line in replica.output().splitlines() if "cannot listen" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "Traceback" not in replica.output()


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout():
    app = ReplicaApp(lambda args: args, "r-idle", PredictionWorker())
    server = ReplicaServer(app, keep_alive_seconds=0.3, graceful_seconds=1)
    outcome: dict[str, Any] = {}

    async def scenario() -> None:
        serving = asyncio.ensure_future(server.serve("127.0.0.1", 0, signals=False))
        while not server.port:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_post(b"[1]"))
        outcome["head"] = await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        outcome["rest"] = await asyncio.wait_for(reader.read(), 5)  # b"" once the server closes
        outcome["after"] = time.monotonic() - started
        server.stop()
        await serving

    thread = threading.Thread(target=lambda: asyncio.run(scenario()))
    thread.start()
    thread.join(15)
    assert outcome["head"].startswith(b"HTTP/1.1 200 OK")
    assert b'"response": [1]' in outcome["rest"]  # the body, then the end of the stream
    assert 0.2 < outcome["after"] < 2.0


def test_a_response_is_one_buffer_with_the_tracked_metrics_header():
    whole = response(200, b"{}", b'{"uuid": "u"}', keep_alive=True)
    assert whole == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
        b'x-cmlplan-metrics: {"uuid": "u"}\r\n\r\n{}'
    )
    assert b"connection: close\r\n" in response(429, b"{}", None, keep_alive=False)
