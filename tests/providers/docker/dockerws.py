"""Helpers for the docker provider's end-to-end tests: a real engine, images and containers.

``docker_engine`` (session) makes sure an engine answers and the offline base image exists, by
running ``scripts/docker-engine`` and ``scripts/docker-base-image``; the tests are skipped only when
no engine answers and dockerd cannot be started. A ``DockerWorkspace`` is a private copy of an
example with ``provider: docker``, a unique workspace name (names are global on an engine) and a
free proxy port; its context manager always runs ``cmlplan destroy`` and then removes whatever is
still labelled with the workspace (containers, networks, volumes), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
CMLPLAN = REPO / ".venv" / "bin" / "cmlplan"
PYTHON = REPO / ".venv" / "bin" / "python"
BASE_IMAGE = "cmlplan-local/python:3.11-bookworm"
CLI_TIMEOUT = 600.0


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DockerWorkspace:
    """A spec folder applied with the real docker provider."""

    def __init__(self, directory: Path, label: str) -> None:
        self.dir = directory
        self.spec = directory / "cmlplan.yaml"
        self.port = free_port()
        self.name = f"t{uuid.uuid4().hex[:8]}-{label}"
        text = self.spec.read_text()
        text = re.sub(r"\bport: \d+", f"port: {self.port}", text)
        text = re.sub(r"(kind: Workspace\nmetadata: \{name: )[a-z0-9-]+\}", rf"\g<1>{self.name}}}", text)
        text = text.replace(
            "  provider: local\n", f"  provider: docker\n  docker: {{base_image: \"{BASE_IMAGE}\"}}\n"
        )
        assert "provider: docker" in text and self.name in text
        self.spec.write_text(text)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/model"

    def replace_in_spec(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text, f"{old!r} is not in {self.spec}"
        self.spec.write_text(text.replace(old, new, 1))

    def cli(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(CMLPLAN), *args], cwd=self.dir, env={**os.environ, "NO_COLOR": "1", **(env or {})},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"cmlplan {' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def apply(self) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-auto-approve")

    def plan_json(self) -> dict[str, Any]:
        return json.loads(self.cli("plan", "--json").stdout)

    def state_show(self, address: str) -> dict[str, Any]:
        return json.loads(self.cli("state", "show", address, "--json").stdout)

    def key(self, address: str) -> str:
        return (self.dir / ".cmlplan" / "keys" / address.replace("/", "_")).read_text().strip()

    def post(self, body: Any, *, api_key: str | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            return exc.code, json.loads(payload) if payload else {}

    def call(self, model: str, request: Any, *, api_key: str | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        return self.post({"accessKey": self.key(model), "request": request}, api_key=api_key, timeout=timeout)

    def containers(self, *, all_states: bool = True) -> list[str]:
        args = ["ps", "--format", "{{.Names}}", "--filter", f"label=cmlplan.workspace={self.name}"]
        return sorted(docker(*args, *(["-a"] if all_states else [])).stdout.split())

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=cmlplan.workspace={self.name}"
        return {
            "containers": self.containers(),
            "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        }

    def teardown(self) -> None:
        try:
            if (self.dir / ".cmlplan" / "state.json").exists():
                self.cli("destroy", "-auto-approve", check=False)
        finally:
            left = self.leftovers()
            if left["containers"]:
                docker("rm", "-f", *left["containers"], check=False)
            for network in left["networks"]:
                docker("network", "rm", network, check=False)
            for volume in left["volumes"]:
                docker("volume", "rm", "-f", volume, check=False)
            images = docker(
                "images", "-q", "--filter", f"label=cmlplan.workspace={self.name}", check=False
            ).stdout.split()
            if images:
                docker("rmi", "-f", *sorted(set(images)), check=False)


@contextlib.contextmanager
def docker_workspace(source: Path, target: Path, label: str) -> Iterator[DockerWorkspace]:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "model.pkl"))
    workspace = DockerWorkspace(target, label)
    try:
        yield workspace
    finally:
        workspace.teardown()
