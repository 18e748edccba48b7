"""Smoke run of bench/docker_build.py: it finishes, prints its three timings and cleans up. No timing asserts."""

from __future__ import annotations

import subprocess

import pytest
from dockerws import PYTHON, REPO, docker

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_docker_build_bench_smoke(docker_engine: str) -> None:
    result = subprocess.run(
        [str(PYTHON), "bench/docker_build.py"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("cold build + deploy", "code-only rebuild", "no-op apply", "served after the rebuild: yes"):
        assert line in result.stdout, result.stdout
    assert "target < 10 s:" in result.stdout and "target < 2 s:" in result.stdout
    workspace = result.stdout.split("workspace ", 1)[1].split()[0]
    assert docker("ps", "-aq", "--filter", f"label=cmlplan.workspace={workspace}").stdout.strip() == ""
    assert docker("images", "-q", "--filter", f"label=cmlplan.workspace={workspace}").stdout.strip() == ""
