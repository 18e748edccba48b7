"""Process helpers for the serving tests: real replica and proxy processes on 127.0.0.1.

Everything a test starts is registered with the ``serving`` fixture and killed on teardown;
every wait has a timeout.
"""

import contextlib
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
SALT = "5a17"

MODELS = """
import time

def add(args):
    return args["a"] + args["b"]

def slow(args):
    time.sleep(args.get("sleep", 1.0))
    return {"slept": args.get("sleep", 1.0), "tag": args.get("tag")}

def boom(args):
    raise ValueError("bad input")

def as_set(args):
    return {1, 2}

def hog(args):
    return len(bytearray(args["bytes"]))

def logged(args):
    with open(args["log"], "a") as handle:
        handle.write(args["tag"] + "\\n")
    time.sleep(args.get("sleep", 0.0))
    return args["tag"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def key_hash(key: str, salt: str = SALT) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    raw: bytes = b""


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 15.0
) -> Reply:
    """One HTTP call with urllib; never raises on an HTTP error status."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = {}
    return Reply(status, parsed, raw)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


def wait_healthy(proc: Proc, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"process exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            reply = http("GET", proc.url + "/healthz", timeout=1.0)
            if reply.status == 200:
                return reply.body
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{proc.url} not healthy after {timeout}s:\n{proc.output()}")


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def model_entry(
    address: str,
    replicas: list[Proc],
    *,
    authentication: bool = False,
    stopped: bool = False,
    project: str = "iris",
) -> dict[str, Any]:
    return {
        "address": address,
        "project": project,
        "name": address.split("/")[-1],
        "authentication": authentication,
        "stopped": stopped,
        "deployment_id": 1,
        "replicas": [{"id": f"r{i}-{p.url.rsplit(':', 1)[1]}", "url": p.url} for i, p in enumerate(replicas)],
    }


def write_routes(
    path: Path,
    models: dict[str, dict[str, Any]],
    *,
    generation: int = 1,
    busy_timeout: float = 5.0,
    request_timeout: float = 10.0,
    max_request_bytes: int = 65536,
    api_keys: dict[str, dict[str, Any]] | None = None,
    projects: dict[str, dict[str, str]] | None = None,
    **read_timeouts: float,
) -> Path:
    """models and api_keys are keyed by the *plaintext* key; they are hashed here.

    read_timeouts: header_timeout, body_timeout, keepalive_timeout (the proxy's defaults otherwise).
    """
    document = {
        "version": 1,
        "generation": generation,
        "salt": SALT,
        "proxy": {
            "busy_timeout": busy_timeout,
            "request_timeout": request_timeout,
            "max_request_bytes": max_request_bytes,
            **read_timeouts,
        },
        "models": {key_hash(key): entry for key, entry in models.items()},
        "api_keys": {key_hash(key): entry for key, entry in (api_keys or {}).items()},
        "projects": projects or {},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)
    return path


def reload(proxy: Proc, generation: int) -> None:
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: http("GET", proxy.url + "/healthz").body.get("generation") == generation)


def call_model(
    proxy: Proc,
    access_key: str | None,
    request: Any,
    *,
    headers: dict[str, str] | None = None,
    query: bool = False,
    timeout: float = 15.0,
) -> Reply:
    body: dict[str, Any] = {"request": request}
    url = proxy.url + "/model"
    if query:
        url += f"?accessKey={access_key}"
    elif access_key is not None:
        body["accessKey"] = access_key
    return http("POST", url, body, {"Content-Type": "application/json", **(headers or {})}, timeout)


@dataclass
class Serving:
    """Starts replicas and proxies, writes model and routes files, and cleans up after itself."""

    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    # plain helpers, exposed here so tests need no import from conftest
    http = staticmethod(http)
    call_model = staticmethod(call_model)
    write_routes = staticmethod(write_routes)
    model_entry = staticmethod(model_entry)
    reload = staticmethod(reload)
    wait_until = staticmethod(wait_until)
    wait_healthy = staticmethod(wait_healthy)
    key_hash = staticmethod(key_hash)
    free_port = staticmethod(free_port)

    def write_models(self) -> Path:
        source = self.tmp / "src"
        source.mkdir(exist_ok=True)
        (source / "predict.py").write_text(MODELS)
        return source

    def spawn(self, args: list[str], name: str, url: str, fd_limit: int | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        handle = log.open("wb")

        def limit_fds() -> None:  # runs in the child, before exec
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        popen = subprocess.Popen(
            [PYTHON, *args],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=limit_fds if fd_limit is not None else None,
        )
        handle.close()
        proc = Proc(popen, log, url)
        self.procs.append(proc)
        return proc

    def replica(
        self,
        function: str,
        replica_id: str | None = None,
        *,
        wait: bool = True,
        extra: list[str] | None = None,
        source: Path | None = None,
    ) -> Proc:
        port = free_port()
        replica_id = replica_id or f"{function}-{port}"
        source = source or self.write_models()
        args = [
            "-m",
            "cmlplan.serving.replica",
            "--source",
            str(source),
            "--file",
            "predict.py",
            "--function",
            function,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--replica-id",
            replica_id,
            *(extra or []),
        ]
        proc = self.spawn(args, f"replica-{replica_id}", f"http://127.0.0.1:{port}")
        if wait:
            wait_healthy(proc)
        return proc

    def proxy(
        self,
        routes: Path,
        *,
        wait: bool = True,
        port: int | None = None,
        fd_limit: int | None = None,
        launcher: list[str] | None = None,
    ) -> Proc:
        """A proxy process; ``launcher`` replaces ``-m cmlplan.serving.proxy`` (e.g. ``-c SCRIPT``)."""
        port = port or free_port()
        args = [
            *(launcher or ["-m", "cmlplan.serving.proxy"]),
            "--routes",
            str(routes),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        proc = self.spawn(args, f"proxy-{port}-{len(self.procs)}", f"http://127.0.0.1:{port}", fd_limit)
        if wait:
            wait_healthy(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    helper = Serving(tmp_path)
    try:
        yield helper
    finally:
        helper.cleanup()
