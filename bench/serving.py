"""Serving throughput and latency: replica direct vs the proxy in front of 1 and 2 replicas.

Starts real processes on 127.0.0.1 with this venv's python: replicas
(``python -m cmlplan.serving.replica``, cwd the model folder) and the proxy
(``python -m cmlplan.serving.proxy`` with a generated routes.json, authentication off), for the
add-numbers model (examples/add-numbers/add.py:add) and the iris model (examples/iris/predict.py:
predict, after running fit.py in a temp copy). For each model it measures, at concurrency 1, 8
and 64 (``--quick``: 1 and 8, 1 s per point):

  direct     POST /predict on one replica with the request JSON
  proxy-1r   POST /model {"accessKey", "request"} on a proxy routing to that replica
  proxy-2r   the same with two replicas

A replica serves one request at a time and answers 429 replica.busy to a concurrent one, so direct
points at concurrency > 1 include 429s: non-2xx are counted and printed separately, throughput is
2xx only. Latency percentiles come from wrk (``wrk --latency``) and cover every response,
429s included; without wrk a bounded aiohttp load generator is used (its latencies are 2xx only).

With mlflow importable, the iris model is also saved with mlflow.sklearn.save_model and served by
``mlflow models serve --env-manager local`` as a reference. Every process is killed on exit.
Numbers are printed side by side from one run; nothing here asserts on time.

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import pickle
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
TARGET_ADDED_MS = 1.0
TARGET_MLFLOW_RATIO = 5.0
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


def start_replica(procs: Processes, name: str, folder: Path, file: str, function: str) -> str:
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
    return url


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

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


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

    def point(self, url: str, body: bytes, concurrency: int, label: str) -> Point:
        if self.wrk:
            point = run_wrk(self.script, url, body, concurrency, self.duration, label)
        else:
            point = asyncio.run(_aiohttp_point(url, body, concurrency, self.duration, label))
        print(row(point), flush=True)
        return point


def header() -> str:
    return (
        f"{'point':<26} {'conc':>5} {'requests':>9} {'2xx':>9} {'non-2xx':>8} {'errors':>7}"
        f" {'2xx req/s':>10} {'p50 ms':>9} {'p99 ms':>9}"
    )


def row(p: Point) -> str:
    return (
        f"{p.label:<26} {p.concurrency:>5d} {p.requests:>9d} {p.ok:>9d} {p.non2xx:>8d} {p.errors:>7d}"
        f" {p.rps:>10.1f} {p.p50_ms:>9.3f} {p.p99_ms:>9.3f}"
    )


# ---------------------------------------------------------------- scenarios


def check(url: str, body: bytes, what: str) -> Any:
    status, reply = http("POST", url, body, timeout=30)
    if status != 200:
        raise RuntimeError(f"{what}: sanity call answered {status}: {reply[:300]!r}")
    return json.loads(reply)


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
) -> dict[str, dict[int, Point]]:
    direct_body = json.dumps(request).encode()
    proxy_body = json.dumps({"accessKey": ACCESS_KEY, "request": request}).encode()
    r1 = start_replica(procs, f"{name}-r1", folder, file, function)
    r2 = start_replica(procs, f"{name}-r2", folder, file, function)
    reply = check(r1 + "/predict", direct_body, f"{name} replica")
    print(f"# {name}: replica answers {json.dumps(reply.get('response'))}", flush=True)
    results: dict[str, dict[int, Point]] = {"direct": {}, "proxy-1r": {}, "proxy-2r": {}}
    for c in levels:
        results["direct"][c] = load.point(r1 + "/predict", direct_body, c, f"{name} direct")
    for kind, replicas in (
        ("proxy-1r", [(f"{name}-r1", r1)]),
        ("proxy-2r", [(f"{name}-r1", r1), (f"{name}-r2", r2)]),
    ):
        url, proc = start_proxy(procs, f"{name}-{kind}", work, replicas)
        check(url + "/model", proxy_body, f"{name} {kind}")
        for c in levels:
            results[kind][c] = load.point(url + "/model", proxy_body, c, f"{name} {kind}")
        procs.stop(proc)
    return results


def mlflow_reference(procs: Processes, load: Load, work: Path, iris: Path, concurrency: int) -> Point | None:
    if importlib.util.find_spec("mlflow") is None:
        print("mlflow not installed: reference skipped", flush=True)
        return None
    import mlflow.sklearn  # type: ignore[import-not-found]

    with (iris / "model.pkl").open("rb") as handle:
        model = pickle.load(handle)
    target = work / "mlflow-iris"
    mlflow.sklearn.save_model(model, str(target))
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        str(target),
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        HOST,
    ]
    bindir = str(Path(PYTHON).parent)
    proc = procs.start(
        "mlflow", argv, cwd=work, env={"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_http(procs, "mlflow", proc, url + "/ping", MLFLOW_START_TIMEOUT)
        body = json.dumps({"inputs": [[5.4]]}).encode()
        reply = check(url + "/invocations", body, "mlflow")
        print(f"# mlflow answers {json.dumps(reply)}", flush=True)
        return load.point(url + "/invocations", body, concurrency, "iris mlflow serve")
    finally:
        procs.stop(proc)


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


def report(all_results: dict[str, dict[str, dict[int, Point]]], mlflow_point: Point | None) -> None:
    print()
    print("== ratios ==")
    for name, results in all_results.items():
        direct, proxied = results["direct"].get(1), results["proxy-1r"].get(1)
        if direct and proxied:
            added = proxied.p50_ms - direct.p50_ms
            met = "met" if added < TARGET_ADDED_MS else "not met"
            print(
                f"ratio {name}: proxy(1 replica)/direct p50 @c1: {proxied.p50_ms:.3f} / {direct.p50_ms:.3f} ms"
                f" = {proxied.p50_ms / direct.p50_ms:.2f}x, added {added:+.3f} ms (target < {TARGET_ADDED_MS:g} ms): {met}"
            )
        one, two = results["proxy-1r"].get(8), results["proxy-2r"].get(8)
        if one and two and one.rps:
            print(
                f"ratio {name}: proxy(2 replicas)/proxy(1 replica) 2xx throughput @c8: "
                f"{two.rps:.1f} / {one.rps:.1f} req/s = {two.rps / one.rps:.2f}x"
            )
        d8 = results["direct"].get(8)
        if d8 and two and d8.rps:
            print(
                f"ratio {name}: proxy(2 replicas)/direct 2xx throughput @c8: {two.rps:.1f} / {d8.rps:.1f} req/s"
                f" = {two.rps / d8.rps:.2f}x (direct: {d8.non2xx} non-2xx)"
            )
    iris_two = all_results.get("iris", {}).get("proxy-2r", {}).get(8)
    if mlflow_point is None:
        print("ratio iris: proxy(2 replicas) vs mlflow serve @c8: mlflow not installed: reference skipped")
    elif iris_two:
        ratio = iris_two.rps / mlflow_point.rps if mlflow_point.rps else float("inf")
        met = "met" if ratio >= TARGET_MLFLOW_RATIO else "not met"
        print(
            f"ratio iris: proxy(2 replicas)/mlflow serve 2xx throughput @c8: {iris_two.rps:.1f} / "
            f"{mlflow_point.rps:.1f} req/s = {ratio:.2f}x (target >= {TARGET_MLFLOW_RATIO:g}x): {met}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (default 5; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per point, concurrency 1 and 8")
    parser.add_argument("--models", default="add-numbers,iris", help="which models (add-numbers,iris)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, routes)")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 5.0)
    duration = min(max(duration, 1.0), 120.0)
    levels = [1, 8] if args.quick else [1, 8, 64]
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (background job)
    work = Path(tempfile.mkdtemp(prefix="cmlplan-bench-serving-"))
    (work / "logs").mkdir()
    procs = Processes(work / "logs")
    load = Load(work, duration)
    print(
        f"# load generator: {load.tool}; {duration:g} s per point; concurrency {levels}; cpus {os.cpu_count()}"
    )
    print("# latency percentiles cover every response (429s included) with wrk; throughput counts 2xx only")
    print(header(), flush=True)
    all_results: dict[str, dict[str, dict[int, Point]]] = {}
    mlflow_point = None
    try:
        if "add-numbers" in wanted:
            folder = prepare_add(work)
            all_results["add-numbers"] = bench_model(
                procs, load, work, "add-numbers", folder, "add.py", "add", {"a": 3, "b": 5}, levels
            )
        if "iris" in wanted:
            folder = prepare_iris(work)
            all_results["iris"] = bench_model(
                procs, load, work, "iris", folder, "predict.py", "predict", {"petal_length": 5.4}, levels
            )
            procs.close()  # replicas off before the reference runs
            mlflow_point = mlflow_reference(procs, load, work, folder, 8)
        report(all_results, mlflow_point)
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
