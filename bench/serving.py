"""Serving throughput, latency and proxy CPU: replica direct vs the proxy in front of 1 and 2 replicas.

Starts real processes on 127.0.0.1 with this venv's python: replicas
(``python -m cmlplan.serving.replica``, cwd the model folder) and the proxy
(``python -m cmlplan.serving.proxy`` with a generated routes.json, authentication off), for the
add-numbers model (examples/add-numbers/add.py:add) and the iris model (examples/iris/predict.py:
predict, after running fit.py in a temp copy). For each model it measures, at concurrency 1, 8
and 64 (``--quick``: 1 and 8):

  direct     POST /predict on one replica with the request JSON
  proxy-1r   POST /model {"accessKey", "request"} on a proxy routing to that replica
  proxy-2r   the same with two replicas

A replica serves one request at a time and answers 429 replica.busy to a concurrent one, so direct
points at concurrency > 1 include 429s: non-2xx are counted and printed separately, throughput is
2xx only. Latency percentiles come from wrk (``wrk --latency``) and cover every response,
429s included; without wrk a bounded aiohttp load generator is used (its latencies are 2xx only).

Each point is measured in ``--rounds`` turns (4 by default) taken in turn with the other two kinds,
then merged (sums; median p50/p99), so that a machine shared with other work does not favour one
of them. CPU per request: the proxy's and the replicas' utime+stime (from /proc/PID/stat) over a point,
divided by the requests answered in it.

References, side by side in the same run, each when importable by ``--reference-python`` (this
venv's python by default): ``mlflow models serve -w 2 --env-manager local`` on the iris model
saved with mlflow.sklearn.save_model, called with its fastest input (``{"inputs": [[5.4]]}``), and
a BentoML 1.4 service with 2 workers doing the same predict. The project does not depend on
either; put them in a side venv:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install "mlflow>=2.16" "bentoml>=1.4,<1.5" scikit-learn
    .venv/bin/python bench/serving.py --models iris --quick --reference-python /tmp/refvenv/bin/python

``--profile DIR`` samples the proxy with py-spy (``pip install py-spy``) during the proxy-2r c=8
point and prints where its time went. Every process is killed on exit. Numbers are printed side by
side from one run; nothing here asserts on time.

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --models iris --duration 8 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HOST = "127.0.0.1"
SALT = "b3c4a5e6f7a8091a2b3c4d5e6f708192"
ACCESS_KEY = "mbench-access-key-0123456789abcdef"
TARGET_ADDED_MS = 0.3  # added p50 at c=1, iris
TARGET_PROXY_CPU_US = 150.0  # proxy CPU per answered request at c=8
TARGET_REPLICA_RATIO = 1.6  # proxy-2r / proxy-1r throughput at c=8
TARGET_REFERENCE_RATIO = 2.5  # proxy-2r vs mlflow -w 2 and BentoML (2 workers) at c=8
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
MLFLOW = "mlflow serve -w 2"
BENTOML = "BentoML (2 workers)"
START_TIMEOUT = 60.0
MLFLOW_START_TIMEOUT = 180.0


# ---------------------------------------------------------------- processes


class Processes:
    """Everything started here, killed (whole process group) on close."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        self.running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def close(self) -> None:
        for _name, proc in reversed(list(self.running)):
            self.stop(proc)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(procs: Processes, name: str, proc: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        with contextlib.suppress(OSError):
            status, _ = http("GET", url, timeout=1.0)
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s:\n{procs.log_tail(name)}")


def start_replica(procs: Processes, name: str, folder: Path, file: str, function: str) -> tuple[str, int]:
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "cmlplan.serving.replica",
        "--source",
        str(folder),
        "--file",
        file,
        "--function",
        function,
        "--host",
        HOST,
        "--port",
        str(port),
        "--replica-id",
        name,
    ]
    proc = procs.start(name, argv, cwd=folder, env={"PYTHONPATH": str(REPO)})
    url = f"http://{HOST}:{port}"
    wait_http(procs, name, proc, url + "/healthz", START_TIMEOUT)
    return url, proc.pid


def start_proxy(
    procs: Processes, name: str, work: Path, replicas: list[tuple[str, str]]
) -> tuple[str, subprocess.Popen[bytes]]:
    routes = {
        "version": 1,
        "generation": 1,
        "salt": SALT,
        "proxy": {"busy_timeout": 30.0, "request_timeout": 30.0, "max_request_bytes": 5 * 1024 * 1024},
        "models": {
            hashlib.sha256((SALT + ACCESS_KEY).encode()).hexdigest(): {
                "address": "model.bench/model",
                "project": "bench",
                "name": "model",
                "authentication": False,
                "stopped": False,
                "deployment_id": 1,
                "replicas": [{"id": rid, "url": url} for rid, url in replicas],
            }
        },
        "api_keys": {},
        "projects": {"bench": {}},
    }
    path = work / f"{name}.routes.json"
    path.write_text(json.dumps(routes, indent=2))
    port = free_port()
    argv = [PYTHON, "-m", "cmlplan.serving.proxy", "--routes", str(path), "--host", HOST, "--port", str(port)]
    proc = procs.start(name, argv, cwd=work, env={"PYTHONPATH": str(REPO)})
    url = f"http://{HOST}:{port}"
    wait_http(procs, name, proc, url + "/healthz", START_TIMEOUT)
    return url, proc


# ---------------------------------------------------------------- load generation


@dataclass
class Point:
    label: str
    concurrency: int
    requests: int
    ok: int
    non2xx: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    proxy_cpu_us: float | None = None  # proxy utime+stime per answered request
    replica_cpu_us: float | None = None  # all replicas' utime+stime per answered request

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of these processes so far, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICK


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"status\\": %d, \\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d, \\"p50\\": %f, \\"p99\\": %f}\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(script: Path, url: str, body: bytes, concurrency: int, duration: float, label: str) -> Point:
    threads = 1 if concurrency == 1 else min(2, concurrency)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        env={**os.environ, "BENCH_BODY": body.decode()},
    )
    match = re.search(r"^BENCHJSON (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(match.group(1))
    non2xx = int(data["status"])
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "timeout"))
    requests = int(data["requests"])
    return Point(
        label,
        concurrency,
        requests,
        requests - non2xx,
        non2xx,
        errors,
        data["duration_us"] / 1e6,
        data["p50"] / 1000.0,
        data["p99"] / 1000.0,
    )


async def _aiohttp_point(url: str, body: bytes, concurrency: int, duration: float, label: str) -> Point:
    import aiohttp

    latencies: list[float] = []
    counts = {"requests": 0, "ok": 0, "non2xx": 0, "errors": 0}
    max_requests = 2_000_000  # hard bound besides the deadline
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            headers = {"Content-Type": "application/json"}
            while time.perf_counter() < deadline and counts["requests"] < max_requests:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as reply:
                        await reply.read()
                        status = reply.status
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1
                    counts["requests"] += 1
                    continue
                counts["requests"] += 1
                if 200 <= status < 300:
                    counts["ok"] += 1
                    latencies.append(time.perf_counter() - t0)
                else:
                    counts["non2xx"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else float("nan")
    return Point(
        label,
        concurrency,
        counts["requests"],
        counts["ok"],
        counts["non2xx"],
        counts["errors"],
        seconds,
        p50,
        p99,
    )


class Load:
    def __init__(self, work: Path, duration: float) -> None:
        self.duration = duration
        self.wrk = shutil.which("wrk")
        self.script = work / "post.lua"
        self.script.write_text(WRK_SCRIPT)

    @property
    def tool(self) -> str:
        return "wrk" if self.wrk else "aiohttp (wrk not installed)"

    def point(
        self,
        url: str,
        body: bytes,
        concurrency: int,
        label: str,
        proxy_pid: int | None = None,
        replica_pids: tuple[int, ...] = (),
        profile: Path | None = None,
        *,
        quiet: bool = False,
    ) -> Point:
        proxy_before = cpu_seconds([proxy_pid]) if proxy_pid else 0.0
        replicas_before = cpu_seconds(list(replica_pids))
        spy = start_profile(profile, proxy_pid) if profile and proxy_pid else None
        if self.wrk:
            point = run_wrk(self.script, url, body, concurrency, self.duration, label)
        else:
            point = asyncio.run(_aiohttp_point(url, body, concurrency, self.duration, label))
        answered = max(1, point.requests)
        if proxy_pid:
            point.proxy_cpu_us = (cpu_seconds([proxy_pid]) - proxy_before) / answered * 1e6
        if replica_pids:
            point.replica_cpu_us = (cpu_seconds(list(replica_pids)) - replicas_before) / answered * 1e6
        if not quiet:
            print(row(point), flush=True)
        if spy is not None and profile is not None:
            finish_profile(spy, profile)
        return point


def header() -> str:
    return (
        f"{'point':<26} {'conc':>5} {'requests':>9} {'2xx':>9} {'non-2xx':>8} {'errors':>7}"
        f" {'2xx req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'proxy us/req':>12} {'replica us/req':>14}"
    )


def row(p: Point) -> str:
    return (
        f"{p.label:<26} {p.concurrency:>5d} {p.requests:>9d} {p.ok:>9d} {p.non2xx:>8d} {p.errors:>7d}"
        f" {p.rps:>10.1f} {p.p50_ms:>9.3f} {p.p99_ms:>9.3f}"
        f" {_us(p.proxy_cpu_us):>12} {_us(p.replica_cpu_us):>14}"
    )


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# ---------------------------------------------------------------- scenarios


def check(url: str, body: bytes, what: str) -> Any:
    status, reply = http("POST", url, body, timeout=30)
    if status != 200:
        raise RuntimeError(f"{what}: sanity call answered {status}: {reply[:300]!r}")
    return json.loads(reply)


def merge(points: list[Point]) -> Point:
    """One point from rounds measured in turn with the others: sums, median percentiles, weighted CPU."""
    first = points[0]
    requests = sum(p.requests for p in points)

    def weighted(values: list[tuple[float | None, int]]) -> float | None:
        if any(v is None for v, _ in values) or not requests:
            return None
        return sum(v * n for v, n in values if v is not None) / requests

    return Point(
        first.label,
        first.concurrency,
        requests,
        sum(p.ok for p in points),
        sum(p.non2xx for p in points),
        sum(p.errors for p in points),
        sum(p.seconds for p in points),
        statistics.median(p.p50_ms for p in points),
        statistics.median(p.p99_ms for p in points),
        weighted([(p.proxy_cpu_us, p.requests) for p in points]),
        weighted([(p.replica_cpu_us, p.requests) for p in points]),
    )


def bench_model(
    procs: Processes,
    load: Load,
    work: Path,
    name: str,
    folder: Path,
    file: str,
    function: str,
    request: Any,
    levels: list[int],
    rounds: int,
    profile: Path | None,
    references: dict[str, tuple[str, bytes]] | None = None,
) -> dict[str, dict[int, Point]]:
    """direct, proxy-1r and proxy-2r (and at c=8 the references) measured in turn, ``rounds`` times
    per level, then merged.

    Taking turns keeps a machine shared with other work from favouring one of them: the
    comparisons (added latency, 2r/1r, vs mlflow and BentoML) are made from interleaved samples.
    """
    direct_body = json.dumps(request).encode()
    proxy_body = json.dumps({"accessKey": ACCESS_KEY, "request": request}).encode()
    r1, pid1 = start_replica(procs, f"{name}-r1", folder, file, function)
    r2, pid2 = start_replica(procs, f"{name}-r2", folder, file, function)
    reply = check(r1 + "/predict", direct_body, f"{name} replica")
    print(f"# {name}: replica answers {json.dumps(reply.get('response'))}", flush=True)
    one, one_proc = start_proxy(procs, f"{name}-proxy-1r", work, [(f"{name}-r1", r1)])
    two, two_proc = start_proxy(procs, f"{name}-proxy-2r", work, [(f"{name}-r1", r1), (f"{name}-r2", r2)])
    check(one + "/model", proxy_body, f"{name} proxy-1r")
    check(two + "/model", proxy_body, f"{name} proxy-2r")
    targets = {
        "direct": (r1 + "/predict", direct_body, None, (pid1,)),
        "proxy-1r": (one + "/model", proxy_body, one_proc.pid, (pid1,)),
        "proxy-2r": (two + "/model", proxy_body, two_proc.pid, (pid1, pid2)),
    }
    for label, (url, body) in (references or {}).items():
        targets[label] = (url, body, None, ())
    results: dict[str, dict[int, Point]] = {kind: {} for kind in targets}
    for c in levels:
        kinds = [k for k in targets if c == 8 or k in ("direct", "proxy-1r", "proxy-2r")]
        samples: dict[str, list[Point]] = {kind: [] for kind in kinds}
        for index in range(rounds):
            for kind in kinds:
                url, body, proxy_pid, pids = targets[kind]
                last = index == rounds - 1
                sampled = (
                    profile / f"{name}-{kind}-c{c}.txt"
                    if profile and last and kind == "proxy-2r" and c == 8
                    else None
                )
                samples[kind].append(
                    load.point(url, body, c, f"{name} {kind}", proxy_pid, pids, sampled, quiet=True)
                )
        for kind in kinds:
            results[kind][c] = merge(samples[kind])
            print(row(results[kind][c]), flush=True)
    procs.stop(one_proc)
    procs.stop(two_proc)
    return results


# ---------------------------------------------------------------- profiling


def start_profile(out: Path, pid: int) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        print("# py-spy not installed: no profile", flush=True)
        return None
    argv = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "200",
        "--nonblocking",
        "-o",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish_profile(spy: subprocess.Popen[bytes], out: Path, top: int = 12) -> None:
    """Stop py-spy; print the share of busy samples per function: inclusive, and self (the leaf)."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    if not out.exists():
        print("# py-spy wrote no profile", flush=True)
        return
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + int(count)
    if not total:
        return
    print(
        f"# profile of the proxy ({total} busy samples at 200 Hz, {out}); a leaf in the loop's run is C code"
    )
    for title, table in (("inclusive", inclusive), ("self", leaf)):
        print(f"#  by {title} share:")
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            print(f"#   {100 * count / total:5.1f}%  {frame}")


# ---------------------------------------------------------------- references


def importable(python: str, module: str) -> bool:
    out = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=120)
    return out.returncode == 0


SAVE_MLFLOW = """
import pickle, sys
import mlflow.sklearn
with open(sys.argv[1], "rb") as handle:
    model = pickle.load(handle)
mlflow.sklearn.save_model(model, sys.argv[2])
"""

BENTO_SERVICE = """
import pickle
from pathlib import Path

import bentoml


@bentoml.service(workers=2)
class Iris:
    def __init__(self) -> None:
        with open(Path(__file__).with_name("model.pkl"), "rb") as handle:
            self.model = pickle.load(handle)

    @bentoml.api
    def predict(self, petal_length: float) -> dict:
        return {"petal_width": round(float(self.model.predict([[petal_length]])[0]), 4)}
"""


def start_mlflow(procs: Processes, work: Path, iris: Path, python: str) -> tuple[str, bytes] | None:
    """``mlflow models serve -w 2`` on the iris model; (URL, body) of its fastest input, or None."""
    if not importable(python, "mlflow.sklearn"):
        print(f"# mlflow not importable by {python}: reference skipped", flush=True)
        return None
    target = work / "mlflow-iris"
    out = subprocess.run(
        [python, "-c", SAVE_MLFLOW, str(iris / "model.pkl"), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"mlflow save_model failed: {out.stderr[-800:]}")
    port = free_port()
    argv = [python, "-m", "mlflow", "models", "serve", "-m", str(target), "--env-manager", "local"]
    argv += ["-w", "2", "-p", str(port), "-h", HOST]
    bindir = str(Path(python).parent)
    proc = procs.start(
        "mlflow", argv, cwd=work, env={"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    )
    url = f"http://{HOST}:{port}"
    wait_http(procs, "mlflow", proc, url + "/ping", MLFLOW_START_TIMEOUT)
    body = json.dumps({"inputs": [[5.4]]}).encode()
    reply = check(url + "/invocations", body, "mlflow")
    print(f"# mlflow answers {json.dumps(reply)}", flush=True)
    return url + "/invocations", body


def start_bentoml(procs: Processes, work: Path, iris: Path, python: str) -> tuple[str, bytes] | None:
    """A BentoML service with 2 workers doing the same predict; (URL, body), or None."""
    if not importable(python, "bentoml"):
        print(f"# bentoml not importable by {python}: reference skipped", flush=True)
        return None
    folder = work / "bento-iris"
    folder.mkdir()
    shutil.copy(iris / "model.pkl", folder / "model.pkl")
    (folder / "service.py").write_text(BENTO_SERVICE)
    port = free_port()
    argv = [python, "-m", "bentoml", "serve", "service:Iris", "--host", HOST, "--port", str(port)]
    bindir = str(Path(python).parent)
    env = {"PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "BENTOML_DO_NOT_TRACK": "true"}
    proc = procs.start("bentoml", argv, cwd=folder, env=env)
    url = f"http://{HOST}:{port}"
    wait_http(procs, "bentoml", proc, url + "/readyz", MLFLOW_START_TIMEOUT)
    body = json.dumps({"petal_length": 5.4}).encode()
    reply = check(url + "/predict", body, "bentoml")
    print(f"# bentoml answers {json.dumps(reply)}", flush=True)
    return url + "/predict", body


# ---------------------------------------------------------------- setup


def prepare_iris(work: Path) -> Path:
    folder = work / "iris"
    shutil.copytree(
        REPO / "examples" / "iris",
        folder,
        ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "model.pkl"),
    )
    out = subprocess.run([PYTHON, "fit.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"fit.py failed: {out.stdout}{out.stderr}")
    return folder


def prepare_add(work: Path) -> Path:
    folder = work / "add-numbers"
    shutil.copytree(
        REPO / "examples" / "add-numbers", folder, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__")
    )
    return folder


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def report(all_results: dict[str, dict[str, dict[int, Point]]], references: dict[str, Point | None]) -> None:
    print()
    print("== targets and ratios (one run, side by side) ==")
    for name, results in all_results.items():
        direct, proxied = results["direct"].get(1), results["proxy-1r"].get(1)
        if direct and proxied:
            added = proxied.p50_ms - direct.p50_ms
            target = (
                f" (target <= {TARGET_ADDED_MS:g} ms): {_met(added <= TARGET_ADDED_MS)}"
                if name == "iris"
                else ""
            )
            print(
                f"{name}: added p50 @c1, proxy(1 replica) - direct: {proxied.p50_ms:.3f} - {direct.p50_ms:.3f} ms"
                f" = {added:+.3f} ms{target}"
            )
        for kind in ("proxy-1r", "proxy-2r"):
            point = results[kind].get(8)
            if point and point.proxy_cpu_us is not None:
                print(
                    f"{name}: proxy CPU per answered request @c8, {kind}: {point.proxy_cpu_us:.0f} us"
                    f" (target <= {TARGET_PROXY_CPU_US:g} us): {_met(point.proxy_cpu_us <= TARGET_PROXY_CPU_US)}"
                    f"; replicas {_us(point.replica_cpu_us)} us"
                )
        one, two = results["proxy-1r"].get(8), results["proxy-2r"].get(8)
        if one and two and one.rps:
            ratio = two.rps / one.rps
            print(
                f"{name}: proxy(2 replicas)/proxy(1 replica) 2xx throughput @c8: {two.rps:.1f} / {one.rps:.1f} req/s"
                f" = {ratio:.2f}x (target >= {TARGET_REPLICA_RATIO:g}x): {_met(ratio >= TARGET_REPLICA_RATIO)}"
            )
        d8 = results["direct"].get(8)
        if d8 and two and d8.rps:
            print(
                f"{name}: proxy(2 replicas)/direct 2xx throughput @c8: {two.rps:.1f} / {d8.rps:.1f} req/s"
                f" = {two.rps / d8.rps:.2f}x (direct: {d8.non2xx} non-2xx)"
            )
    iris_two = all_results.get("iris", {}).get("proxy-2r", {}).get(8)
    for label, point in references.items():
        if point is None:
            print(f"iris: proxy(2 replicas) vs {label} @c8: not importable, skipped")
        elif iris_two:
            ratio = iris_two.rps / point.rps if point.rps else float("inf")
            print(
                f"iris: proxy(2 replicas)/{label} 2xx throughput @c8: {iris_two.rps:.1f} / {point.rps:.1f} req/s"
                f" = {ratio:.2f}x (target >= {TARGET_REFERENCE_RATIO:g}x): {_met(ratio >= TARGET_REFERENCE_RATIO)}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (default 5; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 8 only (and 1 s per point)")
    parser.add_argument("--models", default="add-numbers,iris", help="which models (add-numbers,iris)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, routes)")
    parser.add_argument(
        "--reference-python", default=PYTHON, help="python that imports mlflow and/or bentoml (a side venv)"
    )
    parser.add_argument("--no-references", action="store_true", help="skip mlflow and BentoML")
    parser.add_argument(
        "--rounds", type=int, default=4, help="split each point into this many turns taken with the others"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the proxy-2r c=8 point into DIR")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    duration = min(max(duration, 1.0), 120.0)
    levels = [1, 8] if args.quick else [1, 8, 64]
    rounds = max(1, min(args.rounds, int(duration)))
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (background job)
    work = Path(tempfile.mkdtemp(prefix="cmlplan-bench-serving-"))
    (work / "logs").mkdir()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    procs = Processes(work / "logs")
    load = Load(work, duration / max(1, min(args.rounds, int(duration))))
    print(
        f"# load generator: {load.tool}; {duration:g} s per point in {rounds} turns; concurrency {levels};"
        f" cpus {os.cpu_count()}"
    )
    print("# latency percentiles cover every response (429s included) with wrk; throughput counts 2xx only")
    print("# us/req: utime+stime of the proxy / of the replicas over the point, per answered request")
    print(header(), flush=True)
    all_results: dict[str, dict[str, dict[int, Point]]] = {}
    references: dict[str, Point | None] = {}
    try:
        if "add-numbers" in wanted:
            folder = prepare_add(work)
            all_results["add-numbers"] = bench_model(
                procs,
                load,
                work,
                "add-numbers",
                folder,
                "add.py",
                "add",
                {"a": 3, "b": 5},
                levels,
                rounds,
                args.profile,
            )
        if "iris" in wanted:
            folder = prepare_iris(work)
            started: dict[str, tuple[str, bytes]] = {}
            if not args.no_references:
                python = args.reference_python
                for label, start in ((MLFLOW, start_mlflow), (BENTOML, start_bentoml)):
                    reference = start(procs, work, folder, python)
                    references[label] = None
                    if reference is not None:
                        started[label] = reference
            all_results["iris"] = bench_model(
                procs,
                load,
                work,
                "iris",
                folder,
                "predict.py",
                "predict",
                {"petal_length": 5.4},
                levels,
                rounds,
                args.profile,
                started,
            )
            for label in started:
                references[label] = all_results["iris"].pop(label).get(8)
        report(all_results, references)
    except KeyboardInterrupt:
        print("interrupted: stopping processes", file=sys.stderr)
        return 130
    finally:
        procs.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
