"""Soak: mixed traffic at a fixed rate through the proxy while the model is redeployed and a replica dies.

Creates a private copy of examples/add-numbers in a temp dir (authentication on, one API key, the
proxy on a free 127.0.0.1 port), applies it with the local provider, and sends ``--rate`` requests
per second for ``--minutes`` minutes, open loop (each request is sent at its scheduled time whether
or not earlier ones were answered):

  valid       {"a": i, "b": 1} with the right keys       expect 200 and result i + 1
  exception   {"a": "x", "b": 1} (the model raises)      expect 500 model.exception
  bad-access  an unknown access key                      expect 404 model.not_found
  bad-apikey  an unknown API key                         expect 401 auth.invalid

At 40% of the run the model's code changes and ``cmlplan apply`` rolls out a new build; at 70% one
replica is killed with SIGKILL (supervisord restarts it). Then it prints the requests sent, how
they were answered (by status code), latency p50/p99, and checks that every request is accounted
for (sent == answered + no answer). A request with no answer, or an unexpected answer (any 5xx
other than a 502 of a request that was in flight on the killed replica), fails the soak: exit 1.
The workspace is destroyed at the end, whatever happens.

    .venv/bin/python bench/soak.py --minutes 1
    .venv/bin/python bench/soak.py --minutes 10 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
CMLPLAN = REPO / ".venv" / "bin" / "cmlplan"
EXAMPLE = REPO / "examples" / "add-numbers"
MODEL = "model.numbers/add"
APIKEY = "apikey.soak"
APIKEY_SPEC = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: soak}\nspec: {user: alice, expires_in: 1d}\n"
REQUEST_TIMEOUT = 40.0  # longer than the proxy's request_timeout (30 s): the proxy answers first
CLI_TIMEOUT = 300.0
KINDS = ("valid", "exception", "bad-access", "bad-apikey")
EXPECTED = {"valid": 200, "exception": 500, "bad-access": 404, "bad-apikey": 401}


@dataclass
class Outcome:
    index: int
    kind: str
    sent: float
    answered: float | None = None
    status: int | None = None  # None: no answer (connection error or client timeout)
    error: str = ""
    detail: str = ""


@dataclass
class Soak:
    workdir: Path
    port: int
    outcomes: list[Outcome] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    kill_window: tuple[float, float] | None = None  # (killed at, replica back at)
    started: float = 0.0

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {message}" if self.started else message
        self.events.append(line)
        print(line, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(CMLPLAN), *args], cwd=workdir, env={**os.environ, "NO_COLOR": "1"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"cmlplan {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def programs(workdir: Path) -> dict[str, tuple[str, int | None]]:
    from cmlplan.providers.local.supervisor import Supervisor

    supervisor = Supervisor(workdir / ".cmlplan" / "supervisor")
    return {p.name: (p.state, p.pid) for p in supervisor.programs()} if supervisor.is_running() else {}


def setup(workdir: Path, port: int) -> tuple[str, str]:
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__"))
    spec = workdir / "cmlplan.yaml"
    text = re.sub(r"\bport: \d+", f"port: {port}", spec.read_text())
    text = text.replace("authentication: false", "authentication: true") + APIKEY_SPEC
    spec.write_text(text)
    cli(workdir, "apply", "-auto-approve")
    keys = workdir / ".cmlplan" / "keys"
    return (keys / MODEL.replace("/", "_")).read_text().strip(), (keys / APIKEY).read_text().strip()


def teardown(workdir: Path) -> None:
    from cmlplan.providers.local.supervisor import Supervisor

    try:
        if (workdir / ".cmlplan" / "state.json").exists():
            result = cli(workdir, "destroy", "-auto-approve", check=False)
            print(f"destroy: exit {result.returncode}", flush=True)
    finally:
        supervisor = Supervisor(workdir / ".cmlplan" / "supervisor")
        try:
            supervisor.shutdown(timeout=60)
        except Exception as exc:  # noqa: BLE001 - last resort: kill the daemon by its pid
            print(f"supervisord shutdown failed: {exc}", file=sys.stderr)
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(supervisor.pid_path.read_text()), signal.SIGKILL)


def request_of(index: int, access_key: str, api_key: str) -> tuple[str, dict, dict]:
    kind = KINDS[0] if index % 10 < 7 else KINDS[1 + index % 3]  # 70% valid, 10% each of the rest
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    body: dict = {"accessKey": access_key, "request": {"a": index, "b": 1}}
    if kind == "exception":
        body["request"] = {"a": "x", "b": 1}
    elif kind == "bad-access":
        body["accessKey"] = "not-an-access-key"
    elif kind == "bad-apikey":
        headers["Authorization"] = "Bearer not-an-api-key"
    return kind, headers, body


async def send(session: aiohttp.ClientSession, url: str, outcome: Outcome, headers: dict, body: dict) -> None:
    try:
        async with session.post(url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as reply:
            payload = await reply.read()
            outcome.status = reply.status
            outcome.answered = time.monotonic()
            if outcome.kind == "valid" and reply.status == 200:
                value = json.loads(payload).get("response")
                if value != {"result": outcome.index + 1}:
                    outcome.detail = f"wrong answer {value!r}"
            elif reply.status != EXPECTED[outcome.kind]:
                outcome.detail = payload[:200].decode(errors="replace")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"


async def redeploy(soak: Soak) -> None:
    source = soak.workdir / "add.py"
    source.write_text(source.read_text() + "\n# soak: redeployed\n")
    soak.log("redeploy: add.py changed, cmlplan apply started")
    began = time.monotonic()
    result = await asyncio.to_thread(cli, soak.workdir, "apply", "-auto-approve", check=False)
    summary = next((line for line in result.stdout.splitlines() if "complete!" in line or "incomplete" in line), "")
    soak.log(f"redeploy: apply exit {result.returncode} after {time.monotonic() - began:.1f}s: {summary.strip()}")
    if result.returncode != 0:
        soak.log(f"redeploy output:\n{result.stdout}\n{result.stderr}")


async def kill_replica(soak: Soak) -> None:
    live = await asyncio.to_thread(programs, soak.workdir)
    victims = sorted(n for n, (state, pid) in live.items() if n.startswith("r.") and state == "RUNNING" and pid)
    if not victims:
        soak.log("kill: no running replica found")
        return
    name = victims[0]
    pid = live[name][1]
    assert pid is not None
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    soak.log(f"kill: SIGKILL {name} (pid {pid})")
    deadline = killed_at + 30
    while time.monotonic() < deadline:
        state, new_pid = (await asyncio.to_thread(programs, soak.workdir)).get(name, ("GONE", None))
        if state == "RUNNING" and new_pid not in (None, pid):
            soak.kill_window = (killed_at, time.monotonic())
            soak.log(f"kill: {name} RUNNING again as pid {new_pid} after {time.monotonic() - killed_at:.1f}s")
            return
        await asyncio.sleep(0.1)
    soak.kill_window = (killed_at, time.monotonic())
    soak.log(f"kill: {name} not RUNNING again within 30s")


async def traffic(soak: Soak, access_key: str, api_key: str, minutes: float, rate: float) -> None:
    url = f"http://127.0.0.1:{soak.port}/model"
    total = max(1, int(minutes * 60 * rate))
    connector = aiohttp.TCPConnector(limit=256)
    tasks: list[asyncio.Task[None]] = []
    events: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        soak.started = time.monotonic()
        soak.log(f"traffic: {total} requests at {rate:g}/s to {url}")
        for index in range(total):
            at = soak.started + index / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if index == int(total * 0.4):
                events.append(asyncio.create_task(redeploy(soak)))
            if index == int(total * 0.7):
                events.append(asyncio.create_task(kill_replica(soak)))
            kind, headers, body = request_of(index, access_key, api_key)
            outcome = Outcome(index=index, kind=kind, sent=time.monotonic())
            soak.outcomes.append(outcome)
            tasks.append(asyncio.create_task(send(session, url, outcome, headers, body)))
        soak.log(f"traffic: all sent in {time.monotonic() - soak.started:.1f}s, waiting for answers")
        await asyncio.gather(*tasks)
        await asyncio.gather(*events)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(soak: Soak) -> int:
    outcomes = soak.outcomes
    sent = len(outcomes)
    by_code: dict[int, int] = {}
    for o in outcomes:
        if o.status is not None:
            by_code[o.status] = by_code.get(o.status, 0) + 1
    no_answer = [o for o in outcomes if o.status is None]
    answered = sum(by_code.values())

    def killed_in_flight(o: Outcome) -> bool:
        if o.status != 502 or soak.kill_window is None or o.answered is None:
            return False
        killed_at, _back = soak.kill_window
        return o.sent <= killed_at <= o.answered

    expected = [o for o in outcomes if o.status == EXPECTED[o.kind] and not o.detail]
    in_flight = [o for o in outcomes if killed_in_flight(o)]
    unexpected = [o for o in outcomes if o.status is not None and o not in expected and o not in in_flight]
    latencies = [(o.answered - o.sent) * 1000 for o in outcomes if o.kind == "valid" and o.answered is not None]
    elapsed = max((o.answered or o.sent for o in outcomes), default=soak.started) - soak.started

    print()
    print(f"requests sent:      {sent} in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):.1f}/s)")
    print("by kind:            " + ", ".join(f"{k} {sum(o.kind == k for o in outcomes)}" for k in KINDS))
    print(f"succeeded:          {len(expected)} (answered as expected for their kind: "
          + ", ".join(f"{k} -> {EXPECTED[k]}" for k in KINDS) + ")")
    print("answered by code:   " + ", ".join(f"{code}: {n}" for code, n in sorted(by_code.items())))
    failed_codes: dict[int, int] = {}
    for o in unexpected:
        failed_codes[o.status or 0] = failed_codes.get(o.status or 0, 0) + 1
    print("failed by code:     " + (", ".join(f"{code}: {n}" for code, n in sorted(failed_codes.items())) or "none")
          + f"; in flight on the killed replica (502, allowed): {len(in_flight)}; no answer: {len(no_answer)}")
    print(f"latency (valid):    p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
          f"max {max(latencies, default=float('nan')):.1f} ms")
    accounted = answered + len(no_answer) == sent
    print(f"accounting:         sent {sent} == answered {answered} + no answer {len(no_answer)}: "
          f"{'ok' if accounted else 'MISMATCH'}")
    for o in unexpected[:20]:
        print(f"  unexpected: #{o.index} {o.kind} -> {o.status} at {o.sent - soak.started:.1f}s: {o.detail}")
    for o in no_answer[:20]:
        print(f"  no answer: #{o.index} {o.kind} at {o.sent - soak.started:.1f}s: {o.error}")
    ok = accounted and not no_answer and not unexpected
    print(f"soak: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to send traffic (default 2)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    temp = Path(tempfile.mkdtemp(prefix="cmlplan-soak-"))
    workdir = temp / "add-numbers"
    soak = Soak(workdir=workdir, port=free_port())
    try:
        print(f"soak: workspace {workdir}, proxy on 127.0.0.1:{soak.port}", flush=True)
        access_key, api_key = setup(workdir, soak.port)
        asyncio.run(traffic(soak, access_key, api_key, args.minutes, args.rate))
        return report(soak)
    finally:
        teardown(workdir)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
