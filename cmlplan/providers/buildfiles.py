"""Build steps every provider shares: copy the snapshot and the serving runtime, lock, log tails.

The local provider builds venvs from these, the docker provider build contexts; neither imports
the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cmlplan
from cmlplan.errors import CmlplanError

from .base import Attributes, ProviderError
from .source import FileEntry

RUNTIME_PACKAGES = ("uvloop", "httptools", "psutil")
"""What the serving runtime needs in every venv or image, pinned to the versions cmlplan runs with."""

_LOG_TAIL_LINES = 20
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BuildInputs:
    """What a build's planned attributes ask for, read from the spec folder."""

    model_key: str  # <project>/<model>
    number: int
    source_dir: Path
    manifest: dict[str, FileEntry]
    requirements_text: str

    def request_fields(self, planned: Attributes, progress: Callable[[str], None]) -> dict[str, Any]:
        """The fields every provider's build request shares (local BuildRequest, ImageRequest)."""
        return {
            "model_key": self.model_key,
            "number": self.number,
            "build_hash": str(planned["hash"]),
            "source_dir": self.source_dir,
            "manifest": self.manifest,
            "python": str(planned["python"]),
            "requirements_text": self.requirements_text,
            "build_script": planned.get("build_script"),
            "progress": progress,
        }


def build_inputs(spec_dir: Path, planned: Attributes) -> BuildInputs:
    source = (spec_dir / str(planned["source_path"])).resolve()
    manifest = {
        path: FileEntry(sha256=e["sha256"], size=e["size"], lines=e["lines"]) for path, e in planned["manifest"].items()
    }
    requirements_text = ""
    if planned.get("requirements_file"):
        requirements_text = (source / planned["requirements_file"]).read_text(encoding="utf-8", errors="replace")
    return BuildInputs(
        model_key=str(planned["model"]).removeprefix("model."),
        number=int(planned["number"]),
        source_dir=source,
        manifest=manifest,
        requirements_text=requirements_text,
    )


def build_error(address: str, exc: Exception) -> ProviderError:
    """A failed build as the apply reports it: the reason, then the last lines of its log."""
    lines = "\n".join(f"  | {line}" for line in getattr(exc, "log_tail", [])[-15:])
    return ProviderError(f"{address}: {exc}\n{lines}" if lines else f"{address}: {exc}")


class BuildError(CmlplanError):
    """A build request that cannot be carried out on this machine."""


class BuildFailed(BuildError):
    """A build step failed; ``log_tail`` holds the last lines of the build log for display."""

    def __init__(self, message: str, log_tail: list[str] | None = None, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail or []
        self.log_path = log_path


def copy_manifest(source_dir: Path, manifest: Mapping[str, FileEntry], dest: Path) -> None:
    """Copy exactly the manifest's files, checking each one's sha256 on the way through."""
    if dest.exists():
        make_writable(dest)
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, entry in manifest.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise BuildError(f"manifest path {rel!r} leaves the source directory")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with (source_dir / rel).open("rb") as src, target.open("wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise BuildError(f"{rel} changed since the plan was made; plan again")
        shutil.copymode(source_dir / rel, target)


def copy_runtime(dest: Path) -> None:
    """Copy the running cmlplan's ``__init__.py`` and ``serving/`` so the build carries its own runtime."""
    if dest.exists():
        make_writable(dest)
        shutil.rmtree(dest)
    package = Path(cmlplan.__file__).parent
    (dest / "cmlplan").mkdir(parents=True)
    shutil.copy2(package / "__init__.py", dest / "cmlplan" / "__init__.py")
    shutil.copytree(
        package / "serving",
        dest / "cmlplan" / "serving",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_writable(path: Path) -> None:
    """Give the owner write access again, so the tree can be deleted."""
    if not path.exists():
        return
    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o700)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                extra = 0o700 if name in dirnames else 0o200
                os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) | extra)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except OSError:
        return []
