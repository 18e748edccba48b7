"""Helpers for the local provider's end-to-end tests: real supervisord, replicas and proxy.

A ``LiveWorkspace`` is a private copy of a spec folder whose Proxy listens on a free port; it drives
``.venv/bin/cmlplan`` as a subprocess (NO_COLOR, non-TTY), keeps every CLI output and every key it
ever read (to check later that no secret leaked), and talks HTTP to the proxy. Its context manager
always runs ``cmlplan destroy`` and then shuts the workspace's supervisord down, so no process is
left behind even when a test or the destroy fails.

Test modules import these with ``from localws import ...`` (a bare ``from conftest import`` finds
whichever conftest was imported first when other folders are collected in the same run).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cmlplan.providers.local.supervisor import ProgramState, Supervisor

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
VENV_BIN = REPO / ".venv" / "bin"
CMLPLAN = VENV_BIN / "cmlplan"
PYTHON = VENV_BIN / "python"
CLI_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveWorkspace:
    """A spec folder applied with the real local provider."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.spec = directory / "cmlplan.yaml"
        self.port = free_port()
        self.outputs: list[str] = []  # every stdout/stderr of the CLI, for the secret check
        self.secrets: set[str] = set()  # every plaintext key ever read from .cmlplan/keys
        self.set_spec(re.sub(r"\bport: \d+", f"port: {self.port}", self.spec.read_text()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/model"

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.dir / ".cmlplan" / "supervisor")

    # -- the spec -----------------------------------------------------------------------------------

    def set_spec(self, text: str) -> None:
        self.spec.write_text(text)

    def replace_in_spec(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text, f"{old!r} is not in {self.spec}"
        self.set_spec(text.replace(old, new, 1))

    # -- the CLI ------------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1"}
        result = subprocess.run(
            [str(CMLPLAN), *args],
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.outputs.append(result.stdout)
        self.outputs.append(result.stderr)
        self.collect_keys()
        if check and result.returncode != 0:
            raise AssertionError(
                f"cmlplan {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def apply(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-auto-approve", check=check)

    def plan_json(self) -> dict[str, Any]:
        return json.loads(self.cli("plan", "--json").stdout)

    def state_show(self, address: str) -> dict[str, Any]:
        return json.loads(self.cli("state", "show", address, "--json").stdout)

    def programs_via_subprocess(self) -> dict[str, tuple[str, int | None]]:
        """{program: (state, pid)} as read by a separate Python process, like an operator would."""
        code = (
            "import json, sys\n"
            "from cmlplan.providers.local.supervisor import Supervisor\n"
            "print(json.dumps({p.name: [p.state, p.pid] for p in Supervisor(sys.argv[1]).programs()}))\n"
        )
        out = subprocess.run(
            [str(PYTHON), "-c", code, str(self.dir / ".cmlplan" / "supervisor")],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        return {name: (state, pid) for name, (state, pid) in json.loads(out).items()}

    def programs(self, prefix: str = "") -> list[ProgramState]:
        return self.supervisor.programs(prefix)

    # -- keys ---------------------------------------------------------------------------------------

    def key(self, address: str) -> str:
        value = (self.dir / ".cmlplan" / "keys" / address.replace("/", "_")).read_text().strip()
        self.secrets.add(value)
        return value

    def collect_keys(self) -> None:
        folder = self.dir / ".cmlplan" / "keys"
        if folder.is_dir():
            for path in folder.iterdir():
                with contextlib.suppress(OSError):
                    value = path.read_text().strip()
                    if value:
                        self.secrets.add(value)

    # -- HTTP through the proxy ---------------------------------------------------------------------

    def post(
        self, body: Any, *, api_key: str | None = None, raw: bytes | None = None, timeout: float = 30.0
    ) -> tuple[int, dict[str, Any]]:
        """POST to the proxy's /model: (status, JSON body)."""
        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            return exc.code, json.loads(payload) if payload else {}

    def call(self, model: str, request: Any, *, api_key: str | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        return self.post({"accessKey": self.key(model), "request": request}, api_key=api_key, timeout=timeout)

    # -- cleanup ------------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if (self.dir / ".cmlplan" / "state.json").exists():
                self.cli("destroy", "-auto-approve", check=False)
        finally:
            try:
                self.supervisor.shutdown(timeout=60)
            except Exception as exc:  # noqa: BLE001 - last resort: kill the daemon by pid
                print(f"supervisord shutdown failed: {exc}", file=sys.stderr)
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(self.supervisor.pid_path.read_text()), 9)


@contextlib.contextmanager
def live_workspace(source: Path, target: Path) -> Iterator[LiveWorkspace]:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "model.pkl"))
    workspace = LiveWorkspace(target)
    try:
        yield workspace
    finally:
        workspace.teardown()
