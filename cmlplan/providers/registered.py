"""The source of a registered-model build: the version's MLflow artifacts plus a small shim.

The build downloads the artifacts the plan pinned (refusing them when their digest moved), writes
``cmlplan_mlflow_model.py`` beside them, and from then on it is an ordinary file + function build:
the shim's ``predict`` loads the folder with ``mlflow.pyfunc`` through the serving runtime's
``cmlplan.serving.replica.pyfunc``. So every provider that builds file + function models serves
registered ones. The venv or image installs the model's own requirements.txt with mlflow swapped
for mlflow-skinny (``registry.requirements``), as the plan showed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry.client import RegistryClient
from ..registry.errors import RegistryError
from ..registry.requirements import serving_requirements
from .base import Attributes, Progress, ProviderError
from .buildfiles import BuildInputs, build_inputs
from .source import FileEntry, collect_manifest

SHIM_FILE = "cmlplan_mlflow_model.py"
SHIM_FUNCTION = "predict"
SHIM_VERSION = 1  # part of the build hash: a new shim is a new build
SHIM = '''"""Written by cmlplan: serves the MLflow model in this folder through mlflow.pyfunc."""

from cmlplan.serving.replica.pyfunc import load_predict

predict = load_predict(__file__)
'''


@dataclass(frozen=True)
class RegisteredSource:
    """A downloaded version, ready to snapshot like a source folder."""

    source_dir: Path
    manifest: dict[str, FileEntry]
    requirements_text: str


def fetch_registered(address: str, planned: Attributes, staging: Path, progress: Progress) -> RegisteredSource:
    """Download ``planned['registered']`` into ``staging`` (emptied first) and add the shim."""
    registered = planned.get("registered") or {}
    try:
        uri, artifacts_uri, digest = registered["uri"], registered["artifacts_uri"], registered["artifact_digest"]
    except KeyError as exc:
        raise ProviderError(f"{address}: registered build without {exc.args[0]}; plan again") from None
    if staging.exists():
        shutil.rmtree(staging)
    progress(f"downloading {registered.get('name')} version {registered.get('version')} from {uri}")
    client = RegistryClient(str(registered.get("registry")), str(uri), address)
    try:
        folder = client.download(str(artifacts_uri), str(digest), staging / "download")
    except RegistryError as exc:
        raise ProviderError(str(exc)) from None
    source_dir = staging / "model"
    shutil.move(str(folder), source_dir)
    (source_dir / SHIM_FILE).write_text(SHIM, encoding="utf-8")
    manifest = collect_manifest(source_dir, lambda _warning: None)
    requirements = source_dir / "requirements.txt"
    text = requirements.read_text(encoding="utf-8", errors="replace") if requirements.is_file() else ""
    return RegisteredSource(source_dir, manifest, serving_requirements(text))


@contextlib.asynccontextmanager
async def build_source(
    spec_dir: Path, data_dir: Path, address: str, planned: Attributes, progress: Progress
) -> AsyncIterator[BuildInputs]:
    """What a build copies and installs: the spec folder's files, or a registered version
    downloaded into ``<data_dir>/staging/<project>/<model>/<N>`` for the time of the build."""
    if not planned.get("registered"):
        yield build_inputs(spec_dir, planned)
        return
    model_key, number = str(planned["model"]).removeprefix("model."), int(planned["number"])
    staging = data_dir / "staging" / model_key / str(number)
    try:
        fetched = await asyncio.to_thread(fetch_registered, address, planned, staging, progress)
        yield BuildInputs(model_key, number, fetched.source_dir, dict(fetched.manifest), fetched.requirements_text)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)


def recorded_manifest(planned: Attributes, inputs: BuildInputs) -> dict[str, Any]:
    """A registered build records the files it downloaded (a file build's manifest was planned)."""
    if not planned.get("registered"):
        return {}
    entries = {p: {"sha256": e.sha256, "size": e.size, "lines": e.lines} for p, e in inputs.manifest.items()}
    return {"manifest": entries}
