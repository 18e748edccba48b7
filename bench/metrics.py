"""Model metrics: serving throughput with per-prediction tracking on vs off, and read_metrics speed.

1. Throughput. One proxy (SQLite metrics store, synchronous=FULL, so every tracked prediction is on
   disk before its answer leaves) in front of two replicas of ``plain`` (tracks nothing) and two of
   ``tracked`` (``track_metrics`` with three keys per call). Both are loaded with wrk (bench/serving.py's
   generator; aiohttp without wrk) at each ``--concurrency`` level, in ``--rounds`` alternating turns
   of ``--duration`` s so a shared machine does not favour one; the 2xx throughputs are compared,
   with the CPU per request of the proxy (its store writer thread included) and of the replicas,
   and the fdatasync latency of the store's disk before and after: a durable group commit waits at
   least that long, which bounds throughput at low concurrency. ``--prefill N`` writes N older
   predictions (random UUIDs, as stores from before time-ordered ids hold) to the store first: the
   cost of a row in a store that has been in use, not an empty one.
2. Reads. ``--predictions`` rows (1,000,000 by default, with the metrics examples/churn tracks:
   its three inputs and score, ground truth on a quarter) spread evenly over 24 hours are written
   to a fresh SQLite store; then a one-hour window (~41,700 predictions, ~11 MB of JSON) is read
   ``--reads`` times: straight from the store, as bytes from the proxy's ``POST /metrics/read``,
   and with the SDK's ``read_metrics`` (what a job calls: HTTP and JSON decoding included). The
   target applies to the last one; medians are printed.

Numbers are printed side by side; nothing here asserts on time.

    .venv/bin/python bench/metrics.py
    .venv/bin/python bench/metrics.py --duration 3 --rounds 2 --predictions 200000
    .venv/bin/python bench/metrics.py --skip-reads --prefill 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving import Load, Point, merge  # noqa: E402  (bench/serving.py: wrk, CPU per request)

from cmlplan.serving.store import PredictionRow, open_store  # noqa: E402

PYTHON = sys.executable
SALT = "bench"
MODEL = """
from cmlplan.serving.metrics import track_metrics

def plain(args):
    return {"risk": args["tenure"] / 100}

def tracked(args):
    track_metrics({"tenure": args["tenure"], "plan": args["plan"], "risk": args["tenure"] / 100})
    return {"risk": args["tenure"] / 100}
"""
MODEL_ADDRESS = "model.churn/risk"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_counts(base: str) -> tuple[float, float]:
    """(commits, writes) of the proxy's metrics store writer so far, from its /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = dict(line.split() for line in text.splitlines() if line.startswith("cmlplan_store_"))
    return float(values.get("cmlplan_store_commits_total", 0)), float(values.get("cmlplan_store_writes_total", 0))


def key_hash(key: str) -> str:
    return hashlib.sha256((SALT + key).encode()).hexdigest()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} not healthy after {timeout}s")


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen([PYTHON, *args], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def replica(work: Path, function: str, index: int, procs: list[subprocess.Popen[bytes]]) -> dict[str, str]:
    port = free_port()
    rid = f"{function}-{index}"
    args = ["-m", "cmlplan.serving.replica", "--source", str(work), "--file", "model.py",
            "--function", function, "--port", str(port), "--replica-id", rid]  # fmt: skip
    proc = start(args, work / f"{rid}.log")
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return {"id": rid, "url": url}


def routes(work: Path, replicas: dict[str, list[dict[str, str]]], store: Path | None) -> Path:
    models = {
        key_hash(f"ak-{name}"): {"address": f"{MODEL_ADDRESS}-{name}", "project": "churn", "name": name,
                                 "authentication": False, "deployment_id": 1, "replicas": members}
        for name, members in replicas.items()
    }  # fmt: skip
    document = {
        "version": 1, "generation": 1, "salt": SALT, "models": models,
        "proxy": {"busy_timeout": 30, "request_timeout": 30,
                  **({"metrics_store": {"url": f"sqlite:{store}"}} if store else {})},
        "api_keys": {key_hash("api-bench"): {"name": "bench", "user": "alice"}},
        "projects": {"churn": {"alice": "viewer"}},
    }  # fmt: skip
    path = work / "routes.json"
    path.write_text(json.dumps(document))
    return path


def flush_latency_ms(folder: Path, count: int = 50) -> tuple[float, float]:
    """(median ms, mean CPU us) of an fdatasync after a 4 KiB append in folder: what one durable
    group commit waits for and spends at least, whatever it carries."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    samples = []
    cpu = 0.0
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            began, began_cpu = time.perf_counter(), time.process_time()
            os.fdatasync(fd)
            cpu += time.process_time() - began_cpu
            samples.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples) * 1000, cpu / count * 1e6


def throughput(work: Path, args: argparse.Namespace) -> None:
    (work / "model.py").write_text(MODEL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        members = {name: [replica(work, name, i, procs) for i in range(2)] for name in ("plain", "tracked")}
        replica_pids = {name: tuple(procs[i].pid for i in range(k * 2, k * 2 + 2)) for k, name in enumerate(members)}
        store = work / "tracking.db"
        if args.prefill and not args.no_store:
            fill(store, args.prefill, int(time.time() * 1000) - 2 * 86_400_000, 86_400_000)
        port = free_port()
        table = routes(work, members, None if args.no_store else store)
        proxy = start(["-m", "cmlplan.serving.proxy", "--routes", str(table),
                       "--port", str(port)], work / "proxy.log")  # fmt: skip
        procs.append(proxy)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proxy)
        generator = Load(work, args.duration)
        levels = [int(c) for c in str(args.concurrency).split(",")]
        flush_before = flush_latency_ms(work)
        samples: dict[tuple[str, int], list[Point]] = {}
        commits: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for concurrency in levels:
                for name in ("plain", "tracked"):
                    body = json.dumps({"accessKey": f"ak-{name}", "request": {"tenure": 7, "plan": "gold"}}).encode()
                    before = store_counts(base)
                    point = generator.point(
                        base + "/model", body, concurrency, name, proxy.pid, replica_pids[name], quiet=True
                    )
                    after = store_counts(base)
                    commits.setdefault((name, concurrency), []).append((after[0] - before[0], after[1] - before[1]))
                    samples.setdefault((name, concurrency), []).append(point)
        flush_after = flush_latency_ms(work)
        merged = {key: merge(points) for key, points in samples.items()}
        stored = 0 if args.no_store else open_store(f"sqlite:{store}").execute(
            "SELECT (SELECT COUNT(*) FROM predictions) + (SELECT COUNT(*) FROM inbox)").fetchone()[0]
        answered = sum(p.ok for (name, _c), p in merged.items() if name == "tracked")
        print(f"throughput, {args.rounds} x {args.duration:g}s per point, taken in turns, load generator {generator.tool},"
              f" {args.prefill} predictions in the store before;"
              f" fdatasync of the store's disk: median {flush_before[0]:.2f} ms before, {flush_after[0]:.2f} ms after,"
              f" CPU {flush_before[1]:.0f} / {flush_after[1]:.0f} us each")  # fmt: skip
        print(f"  {'':8s} {'conc':>5s} {'2xx req/s':>10s} {'non-2xx':>8s} {'errors':>7s} {'p50 ms':>8s}"
              f" {'proxy us/req':>13s} {'replicas us/req':>16s}")  # fmt: skip
        for concurrency in levels:
            for name in ("plain", "tracked"):
                p = merged[(name, concurrency)]
                print(f"  {name:8s} {concurrency:5d} {p.rps:10.0f} {p.non2xx:8d} {p.errors:7d} {p.p50_ms:8.2f} "
                      f"{p.proxy_cpu_us or 0:13.0f} {p.replica_cpu_us or 0:16.0f}")  # fmt: skip
        print(f"  tracked predictions stored: {stored - args.prefill} (of {answered} answered)")
        for concurrency in levels:
            plain, tracked = merged[("plain", concurrency)], merged[("tracked", concurrency)]
            extra = (tracked.proxy_cpu_us or 0) - (plain.proxy_cpu_us or 0)
            replicas = (tracked.replica_cpu_us or 0) - (plain.replica_cpu_us or 0)
            kept = tracked.rps / plain.rps if plain.rps else 0.0
            made, written = (sum(x) for x in zip(*commits[("tracked", concurrency)], strict=True))
            print(f"  c={concurrency}: kept with tracking on: {kept:.1%} (target >= 90%); CPU added per tracked"
                  f" prediction: proxy (its store writer thread included) {extra:+.0f} us, replica {replicas:+.0f} us;"
                  f" {written / max(1, made):.1f} writes per commit")  # fmt: skip
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def realistic_row(i: int, ts_ms: int, rng: random.Random) -> PredictionRow:
    """A prediction as examples/churn stores it: its inputs and score, a quarter with ground truth."""
    metrics = {
        "tenure": float(rng.randrange(72)),
        "monthly_charges": round(rng.uniform(18, 120), 2),
        "support_calls": float(rng.randrange(8)),
        "churn_risk": round(rng.random(), 4),
    }
    if i % 4 == 0:
        metrics["churned"] = rng.random() < 0.3
    return PredictionRow(str(uuid.UUID(int=rng.getrandbits(128), version=4)), "churn", MODEL_ADDRESS,
                         f"{MODEL_ADDRESS}/deployments/1", "3", f"r{i % 2}-4180{i % 2}", ts_ms,
                         json.dumps(metrics, separators=(",", ":")))  # fmt: skip


def fill(path: Path, count: int, t0: int, day_ms: int) -> None:
    """count predictions as examples/churn stores them, spread over the day after t0 (UUIDv4: rows
    written before prediction ids were time-ordered, the worst case for the uuid index)."""
    store = open_store(f"sqlite:{path}")
    store.migrate()
    step = day_ms / max(1, count)
    rng = random.Random(7)
    batch = []
    for i in range(count):
        batch.append(realistic_row(i, t0 + int(i * step), rng))
        if len(batch) == 50_000 or i == count - 1:
            store.insert_predictions(batch)
            store.move_inbox()  # as the writer does, in smaller batches
            store.commit()
            batch = []
    store.close()


def reads(work: Path, args: argparse.Namespace) -> None:
    path = work / "million.db"
    day_ms = 24 * 3600 * 1000
    t0 = int(time.time() * 1000) - day_ms
    began = time.monotonic()
    fill(path, args.predictions, t0, day_ms)
    store = open_store(f"sqlite:{path}")
    size_mb = path.stat().st_size / 1e6
    print(f"\nreads: {args.predictions} predictions over 24h (churn's metrics: 4-5 keys) written in"
          f" {time.monotonic() - began:.1f}s, {size_mb:.0f} MB")  # fmt: skip
    start_ms = t0 + 12 * 3600 * 1000
    end_ms = start_ms + 3600 * 1000
    plan = store.execute(
        "EXPLAIN QUERY PLAN SELECT uuid FROM predictions WHERE model = ? AND ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms",
        (MODEL_ADDRESS, start_ms, end_ms),
    ).fetchall()
    print(f"  query plan: {'; '.join(str(step[-1]) for step in plan)}")
    store.close()
    port = free_port()
    members = [{"id": "none", "url": "http://127.0.0.1:9"}]
    document = json.loads(routes(work, {"x": members}, path).read_text())
    document["models"][key_hash("ak-x")]["address"] = MODEL_ADDRESS
    (work / "routes.json").write_text(json.dumps(document))
    proxy = start(["-m", "cmlplan.serving.proxy", "--routes", str(work / "routes.json"), "--port", str(port)],
                  work / "proxy-read.log")  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proxy)
        # timed in a fresh process, as a job calling read_metrics is: this one holds a million rows' garbage
        argv = [PYTHON, "-c", READER, str(path), base, MODEL_ADDRESS, str(start_ms), str(end_ms), str(args.reads)]
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"the reader failed: {out.stderr[-2000:]}")
        timed = json.loads(out.stdout)
    finally:
        proxy.kill()
        proxy.wait()
    print(f"  1-hour window: {timed['entries']} predictions, {timed['bytes'] / 1e6:.1f} MB of JSON")
    print(f"  store.read_json (the JSON built by SQLite)       median {timed['store'] * 1000:7.1f} ms")
    print(f"  POST /metrics/read, bytes only                   median {timed['post'] * 1000:7.1f} ms")
    print(f"  read_metrics() through the proxy ({timed['decoder']:6s} decode) median {timed['sdk'] * 1000:7.1f} ms"
          "  (target < 200 ms)")  # fmt: skip


READER = """
import json, statistics, sys, time, urllib.request
from cmlplan.serving.metrics.client import MetricsClient, orjson
from cmlplan.serving.store import open_store
path, base, model, start, end, reads = sys.argv[1:]
start, end, reads = int(start), int(end), int(reads)
store = open_store("sqlite:" + path)
times = {"store": [], "post": [], "sdk": []}
for _ in range(reads):
    began = time.perf_counter()
    answer = store.read_json(model=model, deployment=None, build=None, start_ms=start, end_ms=end)
    times["store"].append(time.perf_counter() - began)
    store.rollback()
store.close()
query = json.dumps({"model": model, "start_timestamp_ms": start, "end_timestamp_ms": end}).encode()
client = MetricsClient(base, "api-bench")
for _ in range(reads):
    request = urllib.request.Request(base + "/metrics/read", data=query, method="POST",
                                     headers={"authorization": "Bearer api-bench"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as reply:
        body = reply.read()
    times["post"].append(time.perf_counter() - began)
    began = time.perf_counter()
    entries = len(client.read_metrics(model=model, start_timestamp_ms=start, end_timestamp_ms=end)["metrics"])
    times["sdk"].append(time.perf_counter() - began)  # a job would use the answer, then drop it
assert body == answer and entries == answer.count(b'"predictionUuid"')
result = {name: statistics.median(values) for name, values in times.items()}
result.update(entries=entries, bytes=len(answer), decoder="orjson" if orjson else "json")
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="8,64", help="comma-separated levels (default 8,64)")
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--prefill", type=int, default=0,
                        help="predictions already in the store when the throughput load starts (e.g. 1000000)")
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--no-store", action="store_true", help="no store: the replica-side cost of tracking alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cmlplan-bench-metrics-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            throughput(work, args)
        if not args.skip_reads:
            reads(work, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
