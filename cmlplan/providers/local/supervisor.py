"""One supervisord per workspace, driven through its XML-RPC API.

Replicas must outlive the ``cmlplan`` command that started them and come back when they crash, which
is what supervisord already does well; so the local provider keeps one daemonized supervisord per
workspace and talks to it over a private unix socket, the way ``supervisorctl`` does.

Each program lives in its own ``programs/<name>.conf`` (mode 0600), so a program can be added or
removed without touching the others, and a restarted supervisord brings every program back.

Secrets: pass them in ``secret_env``, never in ``command`` or ``env``. The command line is visible
to every user of the machine (``ps``), and ``env`` is written into the program's file. ``secret_env``
goes to a 0600 file in the key folder (``.cmlplan/keys/env/<program>.json``, folder 0700, the one
place plaintext secrets land) and the program starts through ``envexec``, which adds it to the
environment and execs the command: program files and logs then hold only that file's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults, SupervisorTransport

from cmlplan.errors import CmlplanError

_SOCKET_PATH_MAX = 100  # AF_UNIX allows 107 bytes; keep a margin
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INLINE_COMMENT = re.compile(r"\s[;#]")  # configparser cuts a value there, quotes or not


class SupervisorError(CmlplanError):
    """supervisord could not be started or did not do what it was asked."""


class ProgramConfigError(SupervisorError):
    """A program's command or environment cannot be written in supervisord's config syntax."""


@dataclass(frozen=True)
class ProgramState:
    """One process as supervisord reports it (``state``: RUNNING, STARTING, BACKOFF, EXITED, ...)."""

    name: str
    group: str
    state: str
    pid: int | None
    started_at: float | None
    exit_status: int
    description: str


class Supervisor:
    """The workspace's supervisord: files under ``directory``, socket possibly under /tmp.

    Files: ``supervisord.conf``, ``supervisord.pid``, ``supervisord.log``, ``programs/*.conf`` and the
    unix socket ``supervisor.sock`` (or ``/tmp/cmlplan-<sha1(dir)[:12]>/supervisor.sock`` when the
    directory's path is too long for AF_UNIX; the conf file records which).
    """

    def __init__(self, directory: Path, *, start_timeout: float = 20.0, secrets_dir: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        # beside the workspace's key files: <data dir>/keys/env for <data dir>/supervisor
        self.secrets_dir = Path(secrets_dir) if secrets_dir is not None else self.directory.parent / "keys" / "env"
        self.conf_path = self.directory / "supervisord.conf"
        self.pid_path = self.directory / "supervisord.pid"
        self.log_path = self.directory / "supervisord.log"
        self.programs_dir = self.directory / "programs"
        self.socket_path = _socket_path(self.directory)
        self.start_timeout = start_timeout

    # --- the daemon -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when a supervisord answers on the socket and is not shutting down."""
        try:
            state = self._proxy().supervisor.getState()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return False
        return state.get("statename") == "RUNNING"

    def ensure_running(self) -> None:
        """Start supervisord unless it already answers; idempotent and safe for racing callers."""
        if self.is_running():
            return
        self._prepare_directories()
        with self._lock():
            if self.is_running():  # another caller started it while we waited for the lock
                return
            self._wait_for_old_daemon_to_exit()
            _write_atomic(self.conf_path, self._main_config())
            startup_log = self.directory / "supervisord.startup.log"
            with startup_log.open("wb") as out:
                # supervisord daemonizes: the process we start exits once the daemon is listening.
                result = subprocess.run(
                    [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    env=_daemon_env(),
                    timeout=self.start_timeout,
                    check=False,
                )
            if result.returncode != 0:
                detail = _last_line(startup_log) or f"exit status {result.returncode}"
                raise SupervisorError(f"supervisord for {self.directory} did not start: {detail}")
            deadline = time.monotonic() + self.start_timeout
            while not self.is_running():
                if time.monotonic() > deadline:
                    raise SupervisorError(
                        f"supervisord for {self.directory} started but its socket {self.socket_path} "
                        f"did not answer within {self.start_timeout:.0f}s (see {self.log_path})"
                    )
                time.sleep(0.05)

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop every program (gracefully) and supervisord itself; no-op when it is not running."""
        pid = _read_pid(self.pid_path)
        try:
            self._proxy().supervisor.shutdown()
        except (OSError, http.client.HTTPException):
            pass  # not running, or it closed the connection on its way out
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.SHUTDOWN_STATE:
                raise self._error("shutdown", fault) from fault
        if pid is not None:
            deadline = time.monotonic() + timeout
            while _pid_alive(pid):
                if time.monotonic() > deadline:
                    raise SupervisorError(
                        f"supervisord (pid {pid}, socket {self.socket_path}) did not exit within {timeout:.0f}s"
                    )
                time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self.socket_path.parent != self.directory:
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()

    # --- programs -------------------------------------------------------------------------------

    def add_program(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        directory: Path,
        stdout_log: Path,
        autorestart: bool = True,
        startsecs: int = 1,
        stopwaitsecs: int = 40,
        stopsignal: str = "TERM",
        secret_env: Mapping[str, str] | None = None,
    ) -> None:
        """Write ``programs/<name>.conf`` and start the program; re-adding with a new config (or new
        secrets) restarts it.

        ``env`` is added to supervisord's own environment and written in the program file;
        ``secret_env`` is kept in a 0600 file the program reads at each start (see the module's
        docstring). stderr goes to ``stdout_log`` too. A crash is restarted with supervisord's backoff.
        """
        _check_name(name)
        secrets_changed = False
        if secret_env:
            for key in secret_env:
                if not _ENV_KEY.match(key):
                    raise ProgramConfigError(f"program {name}: environment variable name {key!r} is not valid")
            secrets_changed = self._write_secret_env(name, secret_env)
            command = [sys.executable, "-I", "-m", "cmlplan.providers.local.envexec", str(self.secret_env_path(name)), "--", *command]
        else:
            self._remove_secret_env(name)
        text = _program_config(
            name,
            command,
            env,
            Path(directory),
            Path(stdout_log),
            autorestart,
            startsecs,
            stopwaitsecs,
            stopsignal,
        )
        self.ensure_running()
        _write_atomic(self.programs_dir / f"{name}.conf", text)
        added, changed, _removed = self._call("reloadConfig")[0]
        if name in changed or (secrets_changed and name not in added and self._group_exists(name)):
            self._stop_and_remove(name, wait=True)
        elif name not in added and self._group_exists(name):
            return  # same config, already running under supervisord
        try:
            self._call("addProcessGroup", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_ADDED:
                raise self._error(f"addProcessGroup({name})", fault) from fault

    def remove_program(self, name: str, wait: bool = True) -> None:
        """Stop the program (gracefully, up to its stopwaitsecs) and forget it; fine if already gone.

        With ``wait=False`` the stop is only requested; a group still stopping stays listed until a
        later ``remove_program`` call finds it stopped.
        """
        _check_name(name)
        if self.is_running():
            self._stop_and_remove(name, wait=wait)
        with contextlib.suppress(FileNotFoundError):
            (self.programs_dir / f"{name}.conf").unlink()
        self._remove_secret_env(name)
        if self.is_running():
            self._call("reloadConfig")

    def programs(self, prefix: str = "") -> list[ProgramState]:
        """Processes whose name starts with ``prefix``; empty when supervisord is not running."""
        if not self.is_running():
            return []
        states = []
        for info in self._call("getAllProcessInfo"):
            if not info["name"].startswith(prefix):
                continue
            states.append(
                ProgramState(
                    name=info["name"],
                    group=info["group"],
                    state=info["statename"],
                    pid=info["pid"] or None,
                    started_at=float(info["start"]) if info["start"] else None,
                    exit_status=info["exitstatus"],
                    description=info["description"],
                )
            )
        return sorted(states, key=lambda s: s.name)

    def signal(self, name: str, signal: str = "HUP") -> None:
        """Send ``signal`` (a name like ``HUP`` or a number) to the program; fine if it is not running."""
        _check_name(name)
        try:
            self._call("signalProcessGroup", name, signal)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.NOT_RUNNING:
                return
            if fault.faultCode == Faults.BAD_NAME:
                raise SupervisorError(
                    f"supervisord at {self.socket_path} has no program named {name}"
                ) from fault
            raise self._error(f"signalProcessGroup({name}, {signal})", fault) from fault

    def secret_env_path(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.json"

    # --- internals ------------------------------------------------------------------------------

    def _write_secret_env(self, name: str, secret_env: Mapping[str, str]) -> bool:
        """Write the program's secrets file (0600, folder 0700); True when its content changed."""
        path = self.secret_env_path(name)
        text = json.dumps(dict(sorted(secret_env.items())))
        try:
            if path.read_text(encoding="utf-8") == text:
                return False
        except FileNotFoundError:
            pass
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        os.chmod(self.secrets_dir.parent, 0o700)  # the key folder
        _write_atomic(path, text)
        return True

    def _remove_secret_env(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.secret_env_path(name).unlink()

    def _stop_and_remove(self, name: str, wait: bool) -> None:
        try:
            self._call("stopProcessGroup", name, wait)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.BAD_NAME:
                return
            if fault.faultCode != Faults.NOT_RUNNING:
                raise self._error(f"stopProcessGroup({name})", fault) from fault
        try:
            self._call("removeProcessGroup", name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.BAD_NAME or (not wait and fault.faultCode == Faults.STILL_RUNNING):
                return
            raise self._error(f"removeProcessGroup({name})", fault) from fault

    def _group_exists(self, name: str) -> bool:
        return any(info["group"] == name for info in self._call("getAllProcessInfo"))

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, serverurl="unix://" + str(self.socket_path))
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _call(self, method: str, *args: Any) -> Any:
        """Call ``supervisor.<method>``; faults pass through for the caller, transport errors become ours."""
        try:
            return getattr(self._proxy().supervisor, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise SupervisorError(
                f"supervisord at {self.socket_path} did not answer {method}: {exc or type(exc).__name__}"
            ) from exc

    def _error(self, what: str, fault: xmlrpc.client.Fault) -> SupervisorError:
        return SupervisorError(f"supervisord at {self.socket_path}: {what} failed: {fault.faultString}")

    def _prepare_directories(self) -> None:
        for path in (self.directory, self.programs_dir, self.socket_path.parent):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        owner = self.socket_path.parent.stat().st_uid
        if owner != os.getuid():
            raise SupervisorError(f"{self.socket_path.parent} belongs to another user (uid {owner})")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.directory / "supervisord.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _wait_for_old_daemon_to_exit(self) -> None:
        """A supervisord still shutting down holds the socket; starting another would fail."""
        pid = _read_pid(self.pid_path)
        deadline = time.monotonic() + self.start_timeout
        while pid is not None and _pid_alive(pid) and _is_supervisord(pid):
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"supervisord (pid {pid}) for {self.directory} is not answering on {self.socket_path} "
                    "and did not exit; stop it and retry"
                )
            time.sleep(0.1)

    def _main_config(self) -> str:
        return "\n".join(
            [
                "; written by cmlplan: changes are overwritten",
                "[unix_http_server]",
                f"file={_conf_value(str(self.socket_path))}",
                "chmod=0700",
                "",
                "[supervisord]",
                f"logfile={_conf_value(str(self.log_path))}",
                "logfile_maxbytes=10MB",
                "logfile_backups=3",
                f"pidfile={_conf_value(str(self.pid_path))}",
                f"directory={_conf_value(str(self.directory))}",
                f"childlogdir={_conf_value(str(self.directory))}",
                "umask=077",
                "nodaemon=false",
                "",
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                "",
                "[supervisorctl]",
                f"serverurl=unix://{_conf_value(str(self.socket_path))}",
                "",
                "[include]",
                "files = programs/*.conf",
                "",
            ]
        )


# --- config syntax --------------------------------------------------------------------------------


def _program_config(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    directory: Path,
    stdout_log: Path,
    autorestart: bool,
    startsecs: int,
    stopwaitsecs: int,
    stopsignal: str,
) -> str:
    if not command:
        raise ProgramConfigError(f"program {name}: command is empty")
    return "\n".join(
        [
            "; written by cmlplan: changes are overwritten",
            f"[program:{name}]",
            f"command={_conf_value(shlex.join(command), what=f'program {name} command')}",
            f"environment={_environment(name, env)}",
            f"directory={_conf_value(str(directory.absolute()), what=f'program {name} directory')}",
            f"stdout_logfile={_conf_value(str(stdout_log.absolute()), what=f'program {name} log')}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
            "redirect_stderr=true",
            "autostart=true",
            f"autorestart={'true' if autorestart else 'false'}",
            "startretries=100",
            f"startsecs={int(startsecs)}",
            f"stopwaitsecs={int(stopwaitsecs)}",
            f"stopsignal={stopsignal}",
            "stopasgroup=true",
            "killasgroup=true",
            "",
        ]
    )


def _environment(name: str, env: Mapping[str, str]) -> str:
    """Render ``env`` for ``environment=``: supervisord reads it with a non-POSIX shlex and strips quotes.

    A value is wrapped in whichever quote it does not contain; values that cannot survive that
    parser (both quote kinds, a leading or trailing quote, a newline) are refused rather than mangled.
    """
    items = []
    for key, value in sorted(env.items()):
        if not _ENV_KEY.match(key):
            raise ProgramConfigError(f"program {name}: environment variable name {key!r} is not valid")
        where = f"program {name} environment variable {key}"
        if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
            raise ProgramConfigError(f"{where}: a value cannot start or end with a quote for supervisord")
        if "'" in value and '"' in value:
            raise ProgramConfigError(f"{where}: a value cannot contain both ' and \" for supervisord")
        quote = '"' if "'" in value else "'"
        items.append(f"{key}={quote}{_conf_value(value, what=where, secret=True)}{quote}")
    return ",".join(items)


def _conf_value(value: str, *, what: str = "supervisord path", secret: bool = False) -> str:
    """Escape ``value`` for one line of supervisord's config: ``%`` doubled, no newline or comment."""
    shown = "value" if secret else repr(value)
    if "\n" in value or "\r" in value or "\0" in value:
        raise ProgramConfigError(f"{what}: {shown} contains a newline or NUL, which supervisord cannot read")
    if _INLINE_COMMENT.search(value):
        raise ProgramConfigError(
            f"{what}: {shown} has a space before ';' or '#', which supervisord reads as a comment"
        )
    escaped = value.replace("%", "%%")
    if "%(here)s" in escaped:
        raise ProgramConfigError(
            f"{what}: {shown} contains '(here)s' after a '%', which supervisord rewrites"
        )
    return escaped


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ProgramConfigError(f"program name {name!r}: use letters, digits, '.', '_' and '-' only")


# --- files and processes --------------------------------------------------------------------------


def _socket_path(directory: Path) -> Path:
    """``directory/supervisor.sock`` unless that is too long for AF_UNIX, then a /tmp path keyed by it."""
    candidate = directory / "supervisor.sock"
    if len(os.fsencode(str(candidate))) <= _SOCKET_PATH_MAX:
        return candidate
    digest = hashlib.sha1(os.fsencode(str(directory))).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"cmlplan-{digest}" / "supervisor.sock"


def _write_atomic(path: Path, text: str) -> None:
    """Write a 0600 file via temp + fsync + rename: it may hold secrets, and is never seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own unreaped child) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _is_supervisord(pid: int) -> bool:
    """Best effort: a stale pid file may name an unrelated process by now."""
    try:
        return b"supervisord" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _daemon_env() -> dict[str, str]:
    """supervisord's own environment, which every program inherits: the essentials, nothing of the
    caller's (so no secret and no setting of an earlier deployment leaks into a replica)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}
