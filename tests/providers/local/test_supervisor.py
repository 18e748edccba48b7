"""The workspace supervisord, exercised with the real daemon."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmlplan.providers.local.supervisor import ProgramConfigError, ProgramState, Supervisor

pytestmark = pytest.mark.slow

PROGRAM = """\
import json, os, signal, sys, time
out, hups = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGHUP, lambda *_: open(hups, "a").write("hup\\n"))
with open(out + ".tmp", "w") as fh:
    json.dump({"pid": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd()}, fh)
os.replace(out + ".tmp", out)
while True:
    time.sleep(0.05)
"""


def _wait(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_leftover(sup: Supervisor) -> None:
    try:
        pid = int(sup.pid_path.read_text())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path / "ws" / ".cmlplan" / "supervisor")
    try:
        yield supervisor
    finally:
        try:
            supervisor.shutdown(timeout=30)
        finally:
            _kill_leftover(supervisor)


def _add(sup: Supervisor, tmp_path: Path, name: str, env: dict[str, str] | None = None) -> Path:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    out = tmp_path / f"{name}.json"
    sup.add_program(
        name,
        [sys.executable, str(script), str(out), str(tmp_path / f"{name}.hups")],
        env or {},
        directory=tmp_path,
        stdout_log=tmp_path / f"{name}.log",
        startsecs=0,
        stopwaitsecs=5,
    )
    return out


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _running(sup: Supervisor, name: str) -> ProgramState | None:
    states = [s for s in sup.programs(name) if s.name == name and s.state == "RUNNING"]
    return states[0] if states else None


def test_start_is_idempotent_and_files_are_private(sup: Supervisor) -> None:
    assert not sup.is_running()
    sup.ensure_running()
    sup.ensure_running()
    assert sup.is_running()
    assert sup.socket_path.exists()
    assert sup.directory.stat().st_mode & 0o777 == 0o700
    assert sup.conf_path.stat().st_mode & 0o777 == 0o600
    assert sup.programs() == []


def test_program_runs_restarts_after_kill_and_is_removed(sup: Supervisor, tmp_path: Path) -> None:
    _add(sup, tmp_path, "petal-width-3-1")
    first = _wait(lambda: _running(sup, "petal-width-3-1"), what="RUNNING")
    assert isinstance(first, ProgramState) and first.pid and first.group == "petal-width-3-1"
    assert first.started_at and first.started_at <= time.time()

    os.kill(first.pid, signal.SIGKILL)
    second = _wait(
        lambda: (s := _running(sup, "petal-width-3-1")) and s.pid != first.pid and s,
        what="a restarted process",
    )
    assert isinstance(second, ProgramState) and second.pid != first.pid

    sup.remove_program("petal-width-3-1")
    assert sup.programs() == []
    assert not (sup.programs_dir / "petal-width-3-1.conf").exists()
    assert _gone(second.pid)
    sup.remove_program("petal-width-3-1")  # already gone: fine


def test_awkward_environment_reaches_the_process_intact(sup: Supervisor, tmp_path: Path) -> None:
    env = {
        "COMMA": "a,b",
        "PERCENT": "50%",
        "FORMAT": "%(program_name)s",
        "DOUBLE": 'say "hi" now',
        "SINGLE": "it's",
        "SPACES": "  lead and trail  ",
        "EQUALS": "k=v=w",
        "EMPTY": "",
        "BACKSLASH": r"C:\path\n",
        "UNICODE": "héllo ✓",
        "SECRET_TOKEN": "s3cr3t/+==",
    }
    out = _add(sup, tmp_path, "envtest", env)
    report = _wait(lambda: out.exists() and json.loads(out.read_text()), what="env report")
    assert isinstance(report, dict)
    for key, value in env.items():
        assert report["env"][key] == value, key
    assert report["cwd"] == str(tmp_path)
    conf = sup.programs_dir / "envtest.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    state = _running(sup, "envtest")
    assert state is not None
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert b"s3cr3t" not in cmdline


def test_unrepresentable_environment_is_refused_without_echoing_it(sup: Supervisor, tmp_path: Path) -> None:
    for value in ("both ' and \"", "'leading", "line\nbreak", "x ;comment"):
        with pytest.raises(ProgramConfigError, match="SECRET") as info:
            _add(sup, tmp_path, "bad", {"SECRET": value})
        assert value not in str(info.value)
    with pytest.raises(ProgramConfigError, match="name"):
        _add(sup, tmp_path, "iris/petal-width")


def test_signal_reaches_the_program(sup: Supervisor, tmp_path: Path) -> None:
    _add(sup, tmp_path, "sig")
    out = tmp_path / "sig.json"
    _wait(out.exists, what="program start")
    sup.signal("sig", "HUP")
    hups = tmp_path / "sig.hups"
    _wait(lambda: hups.exists() and "hup" in hups.read_text(), what="HUP")


def test_readding_with_a_new_config_restarts_the_program(sup: Supervisor, tmp_path: Path) -> None:
    out = _add(sup, tmp_path, "re", {"V": "1"})
    _wait(lambda: out.exists() and json.loads(out.read_text())["env"].get("V") == "1", what="V=1")
    _add(sup, tmp_path, "re", {"V": "2"})
    _wait(lambda: out.exists() and json.loads(out.read_text())["env"].get("V") == "2", what="V=2")
    assert len(sup.programs("re")) == 1


def test_shutdown_leaves_no_process(sup: Supervisor, tmp_path: Path) -> None:
    _add(sup, tmp_path, "a")
    _add(sup, tmp_path, "b")
    a = _wait(lambda: _running(sup, "a"), what="a")
    b = _wait(lambda: _running(sup, "b"), what="b")
    daemon_pid = int(sup.pid_path.read_text())
    sup.shutdown(timeout=30)
    assert not sup.is_running()
    assert not sup.socket_path.exists()
    for pid in (daemon_pid, a.pid, b.pid):  # type: ignore[union-attr]
        _wait(lambda pid=pid: _gone(pid), timeout=5, what=f"pid {pid} to go")
    sup.shutdown()  # already down: fine


def test_restarted_supervisord_brings_programs_back(sup: Supervisor, tmp_path: Path) -> None:
    _add(sup, tmp_path, "persist")
    _wait(lambda: _running(sup, "persist"), what="persist")
    sup.shutdown(timeout=30)
    sup.ensure_running()
    _wait(lambda: _running(sup, "persist"), what="persist after restart")


def test_long_directory_puts_the_socket_under_tmp(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / ("x" * 120))
    assert str(sup.socket_path).startswith("/tmp/cmlplan-")
    assert len(str(sup.socket_path)) < 100
    try:
        sup.ensure_running()
        assert sup.is_running()
        assert str(sup.socket_path) in sup.conf_path.read_text()
    finally:
        try:
            sup.shutdown(timeout=30)
        finally:
            _kill_leftover(sup)
    assert not sup.socket_path.parent.exists()


def test_racing_callers_start_one_supervisord(sup: Supervisor) -> None:
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            sup.ensure_running()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sup.is_running()
    daemons = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(p).count(str(sup.conf_path)) and not _gone(int(p.name))
    ]
    assert len(daemons) == 1


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _add_secret(sup: Supervisor, tmp_path: Path, name: str, secret_env: dict[str, str]) -> Path:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    out = tmp_path / f"{name}.json"
    sup.add_program(
        name, [sys.executable, str(script), str(out), str(tmp_path / f"{name}.hups")], {"PLAIN": "yes"},
        directory=tmp_path, stdout_log=tmp_path / f"{name}.log", startsecs=0, stopwaitsecs=5,
        secret_env=secret_env,
    )
    return out


def test_secret_env_reaches_the_process_but_not_its_config_or_command_line(sup: Supervisor, tmp_path: Path) -> None:
    secret = {"DB_PASSWORD": "hunter2 ' \" %(here)s ;#", "TOKEN": "s3cr3t/+=="}
    out = _add_secret(sup, tmp_path, "secretive", secret)
    report = _wait(lambda: out.exists() and json.loads(out.read_text()), what="env report")
    assert isinstance(report, dict)
    assert {k: report["env"][k] for k in secret} == secret and report["env"]["PLAIN"] == "yes"
    assert report["cwd"] == str(tmp_path)
    secrets_file = sup.secret_env_path("secretive")
    assert secrets_file == sup.directory.parent / "keys" / "env" / "secretive.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600 and secrets_file.parent.stat().st_mode & 0o777 == 0o700
    state = _running(sup, "secretive")
    assert state is not None
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert b"envexec" not in cmdline, "envexec became the program (same pid)"
    for path in [*sup.directory.rglob("*"), tmp_path / "secretive.log"]:
        if path.is_file():
            data = path.read_bytes()
            assert b"hunter2" not in data and b"s3cr3t" not in data, path
    assert b"hunter2" not in cmdline

    # a new secret value with the same config restarts the program; removing it removes the file
    out.unlink()
    _add_secret(sup, tmp_path, "secretive", {**secret, "TOKEN": "rotated"})
    _wait(lambda: out.exists() and json.loads(out.read_text())["env"].get("TOKEN") == "rotated", what="rotated")
    sup.remove_program("secretive")
    assert not secrets_file.exists()


def test_a_missing_secrets_file_stops_the_program_with_a_clear_line(sup: Supervisor, tmp_path: Path) -> None:
    out = _add_secret(sup, tmp_path, "lost", {"TOKEN": "x"})
    first = _wait(lambda: _running(sup, "lost"), what="RUNNING")
    _wait(out.exists, what="program start")
    sup.secret_env_path("lost").unlink()
    assert isinstance(first, ProgramState) and first.pid
    os.kill(first.pid, signal.SIGKILL)
    log = tmp_path / "lost.log"
    _wait(lambda: log.exists() and "cannot read the program's secrets file" in log.read_text(), what="envexec's line")
