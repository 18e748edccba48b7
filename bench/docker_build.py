"""Docker provider build times for examples/iris: cold build, code-only rebuild, no-op apply.

    .venv/bin/python bench/docker_build.py

Copies examples/iris to a temporary folder with ``provider: docker`` and a unique workspace name,
trains it, then times ``cmlplan apply`` three ways: cold (wheels resolved on the host, image built,
3 replicas and the proxy started), after a one-line code change (only the code layer is rebuilt,
then a zero-downtime rollout), and with nothing to do. Targets are printed as met or not met, never
asserted. Destroys the workspace, runs ``cmlplan gc`` and removes the folder afterwards.
Needs a Docker engine (scripts/docker-engine) and the base image (scripts/docker-base-image).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CMLPLAN = REPO / ".venv" / "bin" / "cmlplan"
PYTHON = REPO / ".venv" / "bin" / "python"
BASE_IMAGE = "cmlplan-local/python:3.11-bookworm"
TARGETS = {"code-only rebuild": 10.0, "no-op apply": 2.0}


def cli(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(CMLPLAN), *args], cwd=folder, env={**os.environ, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200, check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"cmlplan {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def timed_apply(folder: Path) -> float:
    started = time.monotonic()
    cli(folder, "apply", "-auto-approve")
    return time.monotonic() - started


def _step_cached(log: str, needle: str) -> bool:
    lines = log.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("Step ") and needle in line:
            return number + 1 < len(lines) and lines[number + 1].strip() == "---> Using cache"
    return False


def main() -> int:
    for script in ("docker-engine", "docker-base-image"):
        subprocess.run([str(REPO / "scripts" / script)], check=True, stdout=subprocess.DEVNULL)
    temporary = Path(tempfile.mkdtemp(prefix="cmlplan-bench-docker-"))
    folder = temporary / "iris"
    shutil.copytree(REPO / "examples" / "iris", folder, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "model.pkl"))
    spec = folder / "cmlplan.yaml"
    name = f"bench-{uuid.uuid4().hex[:8]}"
    text = spec.read_text().replace("  provider: local\n", f"  provider: docker\n  docker: {{base_image: \"{BASE_IMAGE}\"}}\n")
    text = re.sub(r"(kind: Workspace\nmetadata: \{name: )[a-z0-9-]+\}", rf"\g<1>{name}}}", text)
    text = re.sub(r"\bport: \d+", "port: 18797", text)
    spec.write_text(text)
    results: dict[str, float] = {}
    deps_cached = False
    try:
        subprocess.run([str(PYTHON), "fit.py"], cwd=folder, check=True, capture_output=True, timeout=300)
        results["cold build + deploy"] = timed_apply(folder)
        cold_log = next((folder / ".cmlplan" / "docker" / "iris" / "petal-width").glob("1/build.log")).read_text()
        deps_cached = _step_cached(cold_log, "pip install")
        predict = folder / "predict.py"
        predict.write_text(predict.read_text() + "\n# a one-line code change\n")
        results["code-only rebuild"] = timed_apply(folder)
        results["no-op apply"] = timed_apply(folder)
        call = cli(folder, "call", "model.iris/petal-width", "--input", '{"petal_length": 5.4}', check=False)
        served = "status:   200" in call.stdout
    finally:
        cli(folder, "destroy", "-auto-approve", check=False)
        cli(folder, "gc", check=False)
        shutil.rmtree(temporary, ignore_errors=True)
    print(f"docker provider, examples/iris (3 replicas), workspace {name}")
    for what, seconds in results.items():
        target = TARGETS.get(what)
        verdict = "" if target is None else f"  target < {target:g} s: {'met' if seconds < target else 'not met'}"
        print(f"  {what:<22} {seconds:6.2f} s{verdict}")
    print(f"  served after the rebuild: {'yes' if served else 'NO'}")
    if deps_cached:
        print("  note: the cold build found its dependency layer in the engine's cache (same wheels as an")
        print("        earlier build on this engine); `docker builder prune` first for a colder number")
    return 0


if __name__ == "__main__":
    sys.exit(main())
