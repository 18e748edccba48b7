"""Helpers for fault tests: real cmlplan runs, supervisord, replicas and proxy, with faults injected.

The workspace helper reuses ``LiveWorkspace`` from tests/providers/local/localws.py (loaded by path:
the tests folder is not a package) and adds what fault tests need: a cmlplan run that pauses after a
chosen output line so it can be killed at an exact step, the state document, and the orphan check.
Every process a test starts is killed in a ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cmlplan.state.document import StateDocument
from cmlplan.state.file import FileBackend

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("cmlplan_local_e2e_fixtures", HERE.parent / "providers" / "local" / "localws.py")
assert _spec is not None and _spec.loader is not None
_local = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _local
_spec.loader.exec_module(_local)

LiveWorkspace = _local.LiveWorkspace
live_workspace = _local.live_workspace
EXAMPLES: Path = _local.EXAMPLES
PYTHON: Path = _local.PYTHON
CMLPLAN: Path = _local.CMLPLAN
free_port = _local.free_port

PAUSING_CLI = HERE / "pausing_cli.py"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


class FaultWorkspace(LiveWorkspace):
    """A LiveWorkspace with fault-injection helpers."""

    state_file: Path | None = None  # set when the spec puts state elsewhere (Workspace spec.state.path)
    state_dsn: str | None = None  # set when the spec keeps state in PostgreSQL (workspace "prod")

    @property
    def state_path(self) -> Path:
        return self.state_file or self.dir / ".cmlplan" / "state.json"

    def teardown(self) -> None:
        """LiveWorkspace.teardown, for a state file wherever the spec put it."""
        try:
            if self.state_path.exists() or self.state_dsn is not None:
                self.cli("destroy", "-auto-approve", check=False)
        finally:
            try:
                self.supervisor.shutdown(timeout=60)
            except Exception as exc:  # noqa: BLE001 - last resort: kill the daemon by pid
                print(f"supervisord shutdown failed: {exc}", file=sys.stderr)
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(self.supervisor.pid_path.read_text()), 9)

    @property
    def lock_path(self) -> Path:
        return self.state_path.with_suffix(".lock")

    def state(self) -> StateDocument | None:
        """The state as cmlplan loads it: the document with its journal of recorded actions folded in."""
        if self.state_dsn is not None:
            from cmlplan.state.dsn import DatabaseAddress
            from cmlplan.state.postgres import PostgresBackend

            backend = PostgresBackend(DatabaseAddress.parse(self.state_dsn, "dsn"), "prod")
            try:
                return backend.read()
            finally:
                backend.close()
        return FileBackend(self.state_path).read()

    @property
    def resume_file(self) -> Path:
        return self.dir.parent / f"{self.dir.name}.resume"

    def resume(self) -> None:
        """Let a paused cmlplan (see pausing_cli.py) go on."""
        self.resume_file.touch()

    def popen_cli(self, *args: str, pause_on: str | None = None) -> subprocess.Popen[str]:
        """Start cmlplan with stdout piped; with ``pause_on`` it sleeps after printing a matching line
        until killed or ``resume()``d."""
        return popen_cli(self.dir, self.resume_file, *args, pause_on=pause_on)

    def run_until_line(self, pattern: str, *args: str, timeout: float = 180.0) -> tuple[subprocess.Popen[str], list[str]]:
        """Run cmlplan (paused after the first line matching ``pattern``) and return once it printed it."""
        return run_until_line(self.dir, self.resume_file, pattern, *args, timeout=timeout)

    def programs_by_name(self) -> dict[str, tuple[str, int | None]]:
        if not self.supervisor.is_running():
            return {}
        return {p.name: (p.state, p.pid) for p in self.supervisor.programs()}

    def recorded_programs(self) -> set[str]:
        """Every supervisord program state records: the deployments' replicas and the proxy."""
        names: set[str] = set()
        state = self.state()
        for resource in (state.resources.values() if state else ()):
            if resource.provider == "local" and resource.kind in ("deployment", "proxy"):
                names.update(p["name"] for p in resource.attributes.get("processes") or [])
        return names

    def assert_no_orphans(self) -> None:
        running = set(self.programs_by_name())
        recorded = self.recorded_programs()
        shown = {p["name"] for p in self.state_show("deployment.numbers/add")["attributes"]["processes"]}
        replicas = {n for n in running if n.startswith("r.")}
        assert replicas == shown, f"replicas under supervisord {sorted(replicas)} != recorded {sorted(shown)}"
        assert running == recorded, f"programs {sorted(running)} != recorded in state {sorted(recorded)}"


def popen_cli(directory: Path, resume_file: Path, *args: str, pause_on: str | None = None) -> subprocess.Popen[str]:
    """cmlplan in ``directory`` (any provider), through pausing_cli.py when ``pause_on`` is given."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    command = [str(CMLPLAN), *args]
    if pause_on is not None:
        resume_file.unlink(missing_ok=True)
        env["CMLPLAN_FAULT_PAUSE_ON"] = pause_on
        env["CMLPLAN_FAULT_RESUME_FILE"] = str(resume_file)
        command = [str(PYTHON), str(PAUSING_CLI), *args]
    return subprocess.Popen(
        command, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def run_until_line(
    directory: Path, resume_file: Path, pattern: str, *args: str, timeout: float = 180.0
) -> tuple[subprocess.Popen[str], list[str]]:
    """Run cmlplan (paused after the first line matching ``pattern``) and return once it printed it."""
    process = popen_cli(directory, resume_file, *args, pause_on=pattern)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the CLI pauses after the line, so this cannot overrun
            lines.append(line.rstrip("\n"))
            if re.search(pattern, line):
                return process, lines
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"cmlplan never printed {pattern!r}:\n" + "\n".join(lines))
    except BaseException:
        kill_group(process)
        raise


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process started with start_new_session (and anything it forked); reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@contextlib.contextmanager
def fault_workspace(source: Path, target: Path) -> Iterator[FaultWorkspace]:
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "model.pkl"))
    workspace = FaultWorkspace(target)
    try:
        yield workspace
    finally:
        workspace.teardown()


@pytest.fixture
def numbers(tmp_path: Path) -> Iterator[FaultWorkspace]:
    """A fresh, not yet applied copy of examples/add-numbers on a free port."""
    with fault_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers") as ws:
        yield ws


def lock_holder(ws: FaultWorkspace) -> dict[str, Any]:
    return json.loads(ws.lock_path.read_text())


APIKEY_SPEC = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\nspec: {user: alice, expires_in: 30d}\n"


@pytest.fixture
def numbers_auth(tmp_path: Path) -> Iterator[FaultWorkspace]:
    """add-numbers with authentication on and an API key for alice, applied."""
    with fault_workspace(EXAMPLES / "add-numbers", tmp_path / "add-numbers") as ws:
        ws.replace_in_spec("authentication: false", "authentication: true")
        ws.set_spec(ws.spec.read_text() + APIKEY_SPEC)
        ws.apply()
        yield ws


class Load:
    """``threads`` clients calling the proxy back to back for at most ``seconds`` (and ``limit`` calls
    in all); every call is recorded as (start, end, status), status 0 for no answer."""

    def __init__(self, call: Callable[[], int], threads: int = 4, seconds: float = 8.0, limit: int = 50_000) -> None:
        self.call = call
        self.seconds = seconds
        self.limit = limit
        self.results: list[tuple[float, float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.results) >= self.limit:
                    return
            began = time.monotonic()
            try:
                status = self.call()
            except Exception:  # noqa: BLE001 - no answer at all
                status = 0
            with self._lock:
                self.results.append((began, time.monotonic(), status))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.seconds + 60)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.seconds + 60)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _began, _ended, status in self.results:
            counts[status] = counts.get(status, 0) + 1
        return counts
