"""Fixtures for the docker provider's end-to-end tests (helpers in dockerws.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from dockerws import BASE_IMAGE, REPO, docker


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The base image tag, once an engine answers and the image exists."""
    if shutil.which("docker") is None or docker("info", check=False, timeout=30).returncode != 0:
        started = subprocess.run(
            [str(REPO / "scripts" / "docker-engine")], capture_output=True, text=True, timeout=600, check=False
        )
        if started.returncode != 0 or docker("info", check=False, timeout=30).returncode != 0:
            pytest.skip(
                "no Docker engine: `docker info` fails and scripts/docker-engine could not start dockerd:\n"
                + (started.stdout + started.stderr)[-1500:]
            )
    image = subprocess.run(
        [str(REPO / "scripts" / "docker-base-image"), BASE_IMAGE],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if image.returncode != 0:
        pytest.fail(f"scripts/docker-base-image failed:\n{image.stdout}\n{image.stderr}")
    return BASE_IMAGE

