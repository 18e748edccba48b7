"""Local builds: a read-only source snapshot plus a virtualenv shared per dependency hash.

A build must be immutable and self-contained, like a CML build image: the snapshot holds exactly the
manifest's files (checked against their hashes while copied), the build's own copy of the serving
runtime sits next to it, and both are made read-only. Installing packages is the slow part, so
builds whose dependencies hash the same share one virtualenv.

Layout under ``root`` (the workspace's ``.cmlplan/``)::

    builds/<project>/<model>/<N>/src/        the snapshot (read-only)
    builds/<project>/<model>/<N>/runtime/    cmlplan/__init__.py + cmlplan/serving/ (read-only)
    builds/<project>/<model>/<N>/build.log
    builds/<project>/<model>/<N>/build.json  written last: a build without it is not a build
    venvs/<key>/                             key: 16 hex digits from the dependency hash (``venv_key``)

A replica runs ``<venv_python> -m cmlplan.serving.replica`` with ``PYTHONPATH=<runtime_dir>`` and its
working directory in ``src_dir``; ``BuildOutcome.replica_env()`` gives that PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cmlplan.providers.source import FileEntry, dependency_hash, parse_requirements

from ..buildfiles import (
    RUNTIME_PACKAGES,
    BuildError,
    BuildFailed,
    copy_manifest,
    copy_runtime,
    installed_version,
    locked,
    make_writable,
    read_json,
    tail,
    write_json_atomic,
)

BUILD_MARKER = "build.json"
VENV_MARKER = "cmlplan-venv.json"


class RuntimeUnavailable(BuildError):
    """The requested python runtime is not the one the local provider can use."""




@dataclass(frozen=True)
class BuildRequest:
    """What to build; ``model_key`` is ``<project>/<model>``, paths in ``manifest`` are relative to ``source_dir``."""

    model_key: str
    number: int
    build_hash: str
    source_dir: Path
    manifest: Mapping[str, FileEntry]
    python: str
    requirements_text: str = ""
    build_script: str | None = None
    progress: Callable[[str], None] = field(default=lambda _message: None)


@dataclass(frozen=True)
class BuildOutcome:
    """A finished build on disk; ``reused`` is True when an identical build was already there."""

    model_key: str
    number: int
    build_hash: str
    build_dir: Path
    src_dir: Path
    runtime_dir: Path
    venv_dir: Path
    venv_key: str
    python_executable: Path
    log_path: Path
    reused: bool

    def replica_env(self) -> dict[str, str]:
        """Environment additions a replica process needs to import the build's own runtime."""
        return {"PYTHONPATH": str(self.runtime_dir), "VIRTUAL_ENV": str(self.venv_dir)}


class LocalBuilder:
    """Builds under ``root`` (the workspace's ``.cmlplan/``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.builds_dir = self.root / "builds"
        self.venvs_dir = self.root / "venvs"

    def build_dir(self, model_key: str, number: int) -> Path:
        project, model = _split_key(model_key)
        return self.builds_dir / project / model / str(int(number))

    def build(self, request: BuildRequest) -> BuildOutcome:
        """Build (or reuse) ``request``; raises BuildFailed naming the step and the log."""
        _check_python(request.python)
        build_dir = self.build_dir(request.model_key, request.number)
        build_dir.mkdir(parents=True, exist_ok=True)
        key = venv_key(request.python, request.requirements_text, request.manifest, request.build_script)
        with locked(build_dir / "build.lock"):
            existing = read_json(build_dir / BUILD_MARKER)
            if existing is not None:
                if existing.get("build_hash") != request.build_hash:
                    raise BuildError(
                        f"build {request.model_key}#{request.number} already exists in {build_dir} with other "
                        "inputs; builds are immutable, so remove it or use a new build number"
                    )
                venv_dir = self.venvs_dir / existing["venv_key"]
                if (venv_dir / VENV_MARKER).exists():
                    request.progress(f"build {request.model_key}#{request.number}: reusing {build_dir}")
                    return self._outcome(request, build_dir, existing["venv_key"], reused=True)
                make_writable(build_dir)  # its venv was pruned: rebuild from scratch
            _clear(build_dir, keep={"build.lock"})
            log_path = build_dir / "build.log"
            with log_path.open("w", encoding="utf-8") as log:
                _Build(self, request, build_dir, key, log, log_path).run()
            return self._outcome(request, build_dir, key, reused=False)

    def existing(self, model_key: str, number: int) -> BuildOutcome | None:
        """A finished build on disk (marker written, venv present), or None."""
        build_dir = self.build_dir(model_key, number)
        marker = read_json(build_dir / BUILD_MARKER)
        if marker is None or not (self.venvs_dir / marker.get("venv_key", "?") / VENV_MARKER).exists():
            return None
        venv_dir = self.venvs_dir / marker["venv_key"]
        return BuildOutcome(
            model_key=model_key,
            number=number,
            build_hash=str(marker.get("build_hash")),
            build_dir=build_dir,
            src_dir=build_dir / "src",
            runtime_dir=build_dir / "runtime",
            venv_dir=venv_dir,
            venv_key=marker["venv_key"],
            python_executable=venv_dir / "bin" / "python",
            log_path=build_dir / "build.log",
            reused=True,
        )

    def remove_build(self, model_key: str, number: int) -> None:
        """Delete a build's directory (read-only parts included); fine if it is already gone."""
        build_dir = self.build_dir(model_key, number)
        if not build_dir.exists():
            return
        make_writable(build_dir)
        shutil.rmtree(build_dir)
        for parent in (build_dir.parent, build_dir.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty

    def remove_unused_venvs(self, keep: set[str]) -> list[str]:
        """Delete venvs that no build on disk uses and whose key (or dependency hash) is not in ``keep``."""
        if not self.venvs_dir.exists():
            return []
        wanted = {k[:16] for k in keep} | set(self._venvs_in_use())
        removed = []
        for path in sorted(self.venvs_dir.iterdir()):
            if not path.is_dir() or path.name in wanted:
                continue
            with locked(self.venvs_dir / f"{path.name}.lock"):  # lock files stay: unlinking one races
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed

    def _venvs_in_use(self) -> Iterator[str]:
        if self.builds_dir.exists():
            for marker in self.builds_dir.glob(f"*/*/*/{BUILD_MARKER}"):
                data = read_json(marker)
                if data and "venv_key" in data:
                    yield data["venv_key"]

    def _outcome(self, request: BuildRequest, build_dir: Path, key: str, *, reused: bool) -> BuildOutcome:
        venv_dir = self.venvs_dir / key
        return BuildOutcome(
            model_key=request.model_key,
            number=request.number,
            build_hash=request.build_hash,
            build_dir=build_dir,
            src_dir=build_dir / "src",
            runtime_dir=build_dir / "runtime",
            venv_dir=venv_dir,
            venv_key=key,
            python_executable=venv_dir / "bin" / "python",
            log_path=build_dir / "build.log",
            reused=reused,
        )


def venv_key(
    python: str, requirements_text: str, manifest: Mapping[str, FileEntry], build_script: str | None
) -> str:
    """The venv directory name: the dependency hash, plus the build script when there is one.

    A build script runs inside the shared venv and may install into it, so builds with different
    scripts must not share one. The runtime packages' versions are in the key too, so upgrading
    cmlplan's serving dependencies gives new venvs instead of changing old builds.
    """
    requirements = parse_requirements(requirements_text)
    runtime = {name: installed_version(name) or "" for name in RUNTIME_PACKAGES}
    parts = [dependency_hash(python, requirements, requirements_text), json.dumps(runtime, sort_keys=True)]
    if build_script:
        entry = manifest.get(build_script)
        parts.append(f"{build_script}:{entry.sha256 if entry else 'missing'}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class _Build:
    """One build's steps, each logged; a failure leaves the log and no marker."""

    def __init__(
        self,
        builder: LocalBuilder,
        request: BuildRequest,
        build_dir: Path,
        key: str,
        log: IO[str],
        log_path: Path,
    ) -> None:
        self.builder = builder
        self.request = request
        self.build_dir = build_dir
        self.key = key
        self.log = log
        self.log_path = log_path
        self.label = f"build {request.model_key}#{request.number}"

    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            self._discard()
            raise

    def _run(self) -> None:
        request = self.request
        self._say(f"{self.label}: snapshot of {len(request.manifest)} files")
        src_tmp = self.build_dir / "src.tmp"
        self._step("snapshot", lambda: copy_manifest(request.source_dir, request.manifest, src_tmp))
        venv_dir = self.builder.venvs_dir / self.key
        self._step("venv", lambda: self._ensure_venv(venv_dir))
        if request.build_script:
            self._say(f"{self.label}: running build script {request.build_script}")
            self._run_build_script(venv_dir, src_tmp)
        runtime_tmp = self.build_dir / "runtime.tmp"
        self._step("runtime", lambda: copy_runtime(runtime_tmp))
        for tmp, final in ((src_tmp, "src"), (runtime_tmp, "runtime")):
            os.replace(tmp, self.build_dir / final)
            _make_read_only(self.build_dir / final)
        marker = {
            "model_key": request.model_key,
            "number": request.number,
            "build_hash": request.build_hash,
            "venv_key": self.key,
            "python": request.python,
            "built_at": time.time(),
        }
        write_json_atomic(self.build_dir / BUILD_MARKER, marker)
        self._say(f"{self.label}: done")

    def _ensure_venv(self, venv_dir: Path) -> None:
        """Create the shared venv once; its marker file, written last, is what makes it valid.

        Built in place rather than renamed into place, because a venv's scripts hold absolute paths.
        """
        self.builder.venvs_dir.mkdir(parents=True, exist_ok=True)
        with locked(self.builder.venvs_dir / f"{self.key}.lock"):
            if (venv_dir / VENV_MARKER).exists():
                self._say(f"{self.label}: reusing venv {venv_dir.name}")
                return
            shutil.rmtree(venv_dir, ignore_errors=True)
            try:
                self._say(f"{self.label}: creating venv {venv_dir.name}")
                self._command("venv", [sys.executable, "-m", "venv", str(venv_dir)], cwd=self.builder.root)
                python = str(venv_dir / "bin" / "python")
                pip = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
                requirements = venv_dir / "requirements.txt"
                requirements.write_text(self.request.requirements_text, encoding="utf-8")
                if parse_requirements(self.request.requirements_text):
                    self._say(f"{self.label}: pip install -r requirements.txt")
                    self._command("pip install", [*pip, "-r", str(requirements)], cwd=self.request.source_dir)
                self._say(f"{self.label}: installing the serving runtime ({', '.join(RUNTIME_PACKAGES)})")
                self._command("runtime packages", [*pip, *runtime_pins()], cwd=self.builder.root)
                write_json_atomic(
                    venv_dir / VENV_MARKER,
                    {"python": self.request.python, "key": self.key, "created_at": time.time()},
                )
            except BaseException:
                shutil.rmtree(venv_dir, ignore_errors=True)
                raise

    def _run_build_script(self, venv_dir: Path, src_dir: Path) -> None:
        script = self.request.build_script or ""
        if script not in self.request.manifest:
            self._fail("build script", f"{script} is not in the source snapshot")
        env = _clean_env()
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        self._command("build script", ["bash", script], cwd=src_dir, env=env)

    def _command(self, step: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.log.write(f"$ {' '.join(argv)}\n")
        self.log.flush()
        try:
            result = subprocess.run(
                argv,
                cwd=cwd,
                env=env if env is not None else _clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except OSError as exc:
            self._fail(step, f"cannot run {argv[0]} ({exc.strerror})")
        self.log.flush()
        if result.returncode != 0:
            self._fail(step, f"exit status {result.returncode}")

    def _step(self, step: str, action: Callable[[], None]) -> None:
        try:
            action()
        except BuildFailed:
            raise
        except (OSError, BuildError) as exc:
            self._fail(step, str(exc))

    def _fail(self, step: str, reason: str) -> None:
        self.log.write(f"FAILED at {step}: {reason}\n")
        self.log.flush()
        raise BuildFailed(
            f"{self.label} failed at {step}: {reason} (log: {self.log_path})",
            log_tail=tail(self.log_path),
            log_path=self.log_path,
        )

    def _say(self, message: str) -> None:
        self.log.write(f"== {message}\n")
        self.log.flush()
        self.request.progress(message)

    def _discard(self) -> None:
        """Leave only the log (and the lock) behind, so nothing half-built looks valid."""
        make_writable(self.build_dir)
        _clear(self.build_dir, keep={"build.log", "build.lock"})


# --- steps ----------------------------------------------------------------------------------------






def runtime_pins() -> list[str]:
    return [
        f"{name}=={version}" if (version := installed_version(name)) else name for name in RUNTIME_PACKAGES
    ]




def _check_python(requested: str) -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if ".".join(requested.strip().split(".")[:2]) != here:
        raise RuntimeUnavailable(
            f"runtime python {requested} is not available on the local provider (this machine has {here})"
        )


def _split_key(model_key: str) -> tuple[str, str]:
    project, sep, model = model_key.partition("/")
    for part in (project, model):
        if not sep or not part or part.startswith(".") or "/" in part or "\0" in part:
            raise BuildError(f"model key {model_key!r}: expected <project>/<model>")
    return project, model


# --- files ----------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The environment for pip and build scripts, without our own venv's or PYTHONPATH's influence."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    return env




def _make_read_only(path: Path) -> None:
    """chmod a-w on a tree, files first so directories stay enterable while we walk."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) & ~0o222)
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) & ~0o222)
    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)




def _clear(directory: Path, keep: set[str]) -> None:
    for child in directory.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            make_writable(child)
            shutil.rmtree(child)
        else:
            child.unlink()






