"""Image builds (docker and kubernetes providers): a build context per build, built into an image whose last layer is the code.

A build context lives in ``<data_dir>/docker/<project>/<model>/<N>/``::

    wheels/      every wheel the model needs, resolved on the host (same OS, arch and CPython 3.11
                 as the image), so the image installs offline with ``pip install --no-index``
    runtime/     cmlplan/__init__.py + cmlplan/serving/: the serving runtime of this cmlplan
    src/         the snapshot of the manifest's files (sha256 checked on the way in)
    Dockerfile
    build.log    the engine's build output

The layers go from the least to the most often changed: base, venv, wheels + pip install
(cached while the requirements and the runtime packages stay the same), runtime, code. Wheels are
resolved once per dependency set into ``<data_dir>/docker/wheels/<key>/`` and hard-linked into each
context with fixed mtimes, so an unchanged dependency set gives byte-identical layers and the
engine's cache skips the install; a code-only change rebuilds only the ``COPY src`` layer.

The proxy image is built the same way from the serving runtime alone (the serving package never
imports the control plane) plus wheels of its third-party dependencies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cmlplan

from .buildfiles import (
    RUNTIME_PACKAGES,
    BuildError,
    BuildFailed,
    copy_manifest,
    copy_runtime,
    installed_version,
    locked,
    make_writable,
    tail,
    write_json_atomic,
)
from .source import FileEntry, dependency_hash, parse_requirements

IMAGE_PYTHON = "3.11"
# psycopg: a Workspace's metrics.dsn makes the proxy write PostgreSQL (imported only then)
PROXY_PACKAGES = ("uvloop", "httptools", "orjson", "prometheus-client", "psycopg", "psycopg-binary")
MLFLOW_PACKAGES = ("mlflow", "psycopg[binary]", "boto3")
"""The registry image: the server, a PostgreSQL driver for SQLAlchemy, the S3 client."""
WHEELS_MARKER = "cmlplan-wheels.json"
LABEL_WORKSPACE = "cmlplan.workspace"
LABEL_ADDRESS = "cmlplan.address"
LABEL_BUILD_HASH = "cmlplan.build-hash"
LABEL_KIND = "cmlplan.kind"
_LAYER = re.compile(r"^---> ([0-9a-f]{12,64})$")
_FIXED_MTIME = 315532800  # 1980-01-01: what wheels use too; makes contexts reproducible


@dataclass(frozen=True)
class ImageRequest:
    """One model build; ``model_key`` is ``<project>/<model>``."""

    workspace: str
    address: str  # build.<project>/<model>#<N>
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
class ImageOutcome:
    tag: str
    image_id: str
    context_dir: Path
    log_path: Path
    seconds: float
    reused: bool


def image_tag(workspace: str, model_key: str, number: int) -> str:
    project, _, model = model_key.partition("/")
    return f"cmlplan/{workspace}-{project}-{model}:{int(number)}"


class ImageBuilder:
    """Builds model and proxy images with the engine's classic builder, offline."""

    def __init__(self, api: Any, root: Path, base_image: str) -> None:
        self.api = api  # docker.APIClient
        self.root = Path(root).absolute() / "docker"
        self.base_image = base_image

    def context_dir(self, model_key: str, number: int) -> Path:
        project, _, model = model_key.partition("/")
        return self.root / project / model / str(int(number))

    # -- model images -----------------------------------------------------------------------------

    def build(self, request: ImageRequest) -> ImageOutcome:
        started = time.monotonic()
        _check_python(request.python)
        tag = image_tag(request.workspace, request.model_key, request.number)
        context = self.context_dir(request.model_key, request.number)
        log_path = context / "build.log"
        existing = self.image(tag)
        if existing is not None and existing["labels"].get(LABEL_BUILD_HASH) == request.build_hash:
            request.progress(f"image {tag} exists; reusing it")
            return ImageOutcome(tag, existing["id"], context, log_path, time.monotonic() - started, True)
        self._check_base()
        context.mkdir(parents=True, exist_ok=True)
        label = f"build {request.model_key}#{request.number}"
        with locked(context.parent / f"{context.name}.lock"):
            _clear(context)
            with log_path.open("w", encoding="utf-8") as log:
                request.progress(f"{label}: resolving wheels on the host")
                wheels = self._wheelhouse(request, log, log_path, label)
                _link_tree(wheels, context / "wheels")
                request.progress(f"{label}: snapshot of {len(request.manifest)} files")
                try:
                    copy_manifest(request.source_dir, request.manifest, context / "src")
                    copy_runtime(context / "runtime")
                except (OSError, BuildError) as exc:
                    log.write(f"FAILED at snapshot: {exc}\n")
                    raise BuildFailed(f"{label} failed at snapshot: {exc} (log: {log_path})", [], log_path) from None
                _normalize(context / "src", fixed_mtime=False)
                _normalize(context / "runtime", fixed_mtime=True)
                labels = {
                    LABEL_WORKSPACE: request.workspace,
                    LABEL_ADDRESS: request.address,
                    LABEL_BUILD_HASH: request.build_hash,
                    LABEL_KIND: "build",
                }
                dockerfile = self._dockerfile(request.build_script, labels)
                (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
                image_id = self._run_build(context, tag, log, log_path, label, request.progress)
        request.progress(f"{label}: image {tag} built in {time.monotonic() - started:.1f}s")
        return ImageOutcome(tag, image_id, context, log_path, time.monotonic() - started, False)

    def _dockerfile(self, build_script: str | None, labels: dict[str, str]) -> str:
        lines = [
            f"FROM {self.base_image}",
            "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\",
            "    VIRTUAL_ENV=/opt/venv PYTHONPATH=/opt/cmlplan-runtime PYTHONUNBUFFERED=1 \\",
            "    PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8",
            "RUN python3 -m venv /opt/venv",
            "COPY wheels /tmp/wheels",
            "RUN /opt/venv/bin/pip install --no-input --disable-pip-version-check --no-cache-dir"
            " --no-index --find-links /tmp/wheels /tmp/wheels/*.whl && rm -rf /tmp/wheels",
            "COPY runtime /opt/cmlplan-runtime",
            "WORKDIR /app",
            "COPY src /app",
        ]
        if build_script:
            lines.append(f"RUN bash {json.dumps(build_script)}")
        lines.append("USER 65534:65534")
        lines.append("LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items())))
        return "\n".join(lines) + "\n"

    def _wheelhouse(self, request: ImageRequest, log: Any, log_path: Path, label: str) -> Path:
        """Wheels for the requirements plus the serving runtime, resolved once per dependency set."""
        requirements = parse_requirements(request.requirements_text)
        runtime = {name: installed_version(name) or "" for name in RUNTIME_PACKAGES}
        key = hashlib.sha256(
            "\n".join(
                [
                    dependency_hash(request.python, requirements, request.requirements_text),
                    json.dumps(runtime, sort_keys=True),
                    _platform(),
                ]
            ).encode()
        ).hexdigest()[:16]
        pins = [f"{n}=={v}" if v else n for n, v in runtime.items()]
        return self._ensure_wheels(
            key, request.requirements_text, pins, request.source_dir, log, log_path, label
        )

    def _ensure_wheels(
        self, key: str, requirements_text: str, pins: list[str], cwd: Path, log: Any, log_path: Path, label: str
    ) -> Path:
        wheels_root = self.root / "wheels"
        wheels_root.mkdir(parents=True, exist_ok=True)
        directory = wheels_root / key
        with locked(wheels_root / f"{key}.lock"):
            if (directory / WHEELS_MARKER).exists():
                log.write(f"== reusing wheels {directory}\n")
                return directory
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            argv = [sys.executable, "-m", "pip", "wheel", "--no-input", "--disable-pip-version-check",
                    "-w", str(directory)]
            if parse_requirements(requirements_text):
                (directory / "requirements.txt").write_text(requirements_text, encoding="utf-8")
                argv += ["-r", str(directory / "requirements.txt")]
            argv += pins
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            result = subprocess.run(
                argv, cwd=cwd, env=_clean_env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, check=False,
            )
            log.flush()
            if result.returncode != 0:
                shutil.rmtree(directory, ignore_errors=True)
                log.write(f"FAILED at wheels: pip wheel exit status {result.returncode}\n")
                log.flush()
                raise BuildFailed(
                    f"{label} failed at wheels: pip wheel exit status {result.returncode} (log: {log_path})",
                    tail(log_path), log_path,
                )
            (directory / "requirements.txt").unlink(missing_ok=True)
            _normalize(directory, fixed_mtime=True)
            write_json_atomic(directory / WHEELS_MARKER, {"key": key, "created_at": time.time()})
            return directory

    # -- the proxy and registry images (shared by every workspace on the engine) --------------------

    def proxy_tag(self) -> str:
        digest = hashlib.sha256()
        package = Path(cmlplan.__file__).parent
        files = [package / "__init__.py", *sorted((package / "serving").rglob("*.py"))]
        for path in files:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        digest.update(json.dumps({n: installed_version(n) for n in PROXY_PACKAGES}, sort_keys=True).encode())
        digest.update(self.base_image.encode())
        return f"cmlplan/proxy:{cmlplan.__version__}-{digest.hexdigest()[:12]}"

    def ensure_proxy_image(self, progress: Callable[[str], None]) -> str:
        pins = [f"{n}=={v}" if (v := installed_version(n)) else n for n in PROXY_PACKAGES]
        return self._ensure_service_image(self.proxy_tag(), "proxy", "proxy image", pins, progress, runtime=True)

    def ensure_mlflow_image(self, progress: Callable[[str], None]) -> str:
        """The managed ModelRegistry's image: mlflow (server extras included) installed offline."""
        tag = mlflow_tag(self.base_image)
        return self._ensure_service_image(tag, "mlflow", "mlflow server image", mlflow_pins(), progress)

    def _ensure_service_image(
        self, tag: str, kind: str, label: str, pins: list[str], progress: Callable[[str], None], runtime: bool = False,
    ) -> str:
        if self.image(tag) is not None:
            return tag
        self._check_base()
        context = self.root / kind / tag.rpartition(":")[2]
        context.mkdir(parents=True, exist_ok=True)
        log_path = context / "build.log"
        with locked(context.parent / f"{context.name}.lock"):
            if self.image(tag) is not None:
                return tag
            _clear(context)
            with log_path.open("w", encoding="utf-8") as log:
                progress(f"building the {label} {tag}")
                key = hashlib.sha256((f"{kind}\n" + "\n".join(pins) + _platform()).encode()).hexdigest()[:16]
                wheels = self._ensure_wheels(key, "", pins, self.root, log, log_path, label)
                _link_tree(wheels, context / "wheels")
                (context / "runtime").mkdir()
                if runtime:
                    copy_runtime(context / "runtime")
                _normalize(context / "runtime", fixed_mtime=True)
                (context / "src").mkdir()
                dockerfile = self._dockerfile(None, {LABEL_KIND: kind})
                (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
                self._run_build(context, tag, log, log_path, label, progress)
        return tag

    # -- engine calls -----------------------------------------------------------------------------

    def image(self, tag: str) -> dict[str, Any] | None:
        import docker.errors

        try:
            data = self.api.inspect_image(tag)
        except docker.errors.ImageNotFound:
            return None
        return {"id": data["Id"], "labels": (data.get("Config") or {}).get("Labels") or {}}

    def _check_base(self) -> None:
        import docker.errors

        if self.image(self.base_image) is not None:
            return
        try:
            self.api.pull(self.base_image)
        except docker.errors.DockerException as exc:
            raise BuildError(
                f"base image {self.base_image} is not in the Docker engine and cannot be pulled ({getattr(exc, 'explanation', None) or exc}); "
                "without a registry, run scripts/docker-base-image and set "
                "docker: {base_image: cmlplan-local/python:3.11-bookworm} in the Workspace"
            ) from None
        if self.image(self.base_image) is None:
            raise BuildError(f"base image {self.base_image} is still missing after a pull")

    def _run_build(
        self, context: Path, tag: str, log: Any, log_path: Path, label: str, progress: Callable[[str], None],
    ) -> str:
        import docker.errors

        log.write(f"== docker build -t {tag} {context}\n")
        log.flush()
        image_id: str | None = None
        error: str | None = None
        last_layer: str | None = None
        try:
            stream = self.api.build(
                path=str(context), tag=tag, rm=True, forcerm=True, pull=False, decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    text = str(chunk["stream"])
                    log.write(text)
                    for line in text.splitlines():
                        if line.startswith("Step "):
                            progress(f"{label}: {line.strip()[:100]}")
                        elif match := _LAYER.match(line.strip()):
                            last_layer = match.group(1)
                if "error" in chunk:
                    error = str(chunk["error"]).strip()
                    log.write(f"ERROR: {error}\n")
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
                log.flush()
        except docker.errors.APIError as exc:
            error = str(exc)
            log.write(f"ERROR: {error}\n")
        log.flush()
        if error is not None:
            if last_layer:
                self._remove_dangling(last_layer)
            raise BuildFailed(f"{label} failed: docker build: {error} (log: {log_path})", tail(log_path), log_path)
        found = self.image(tag)
        if found is None:
            raise BuildFailed(f"{label} failed: no image {tag} after the build (log: {log_path})", tail(log_path), log_path)
        return image_id or found["id"]

    def _remove_dangling(self, layer: str) -> None:
        """A failed build leaves its last good step as an untagged image no label finds: remove it."""
        import docker.errors

        with contextlib.suppress(docker.errors.DockerException):
            if not self.api.inspect_image(layer).get("RepoTags"):
                self.api.remove_image(layer)  # refused (and kept) when another image builds on it

    # -- garbage ----------------------------------------------------------------------------------

    def remove_context(self, model_key: str, number: int) -> None:
        context = self.context_dir(model_key, number)
        if context.exists():
            make_writable(context)
            shutil.rmtree(context, ignore_errors=True)
        with contextlib.suppress(OSError):
            (context.parent / f"{context.name}.lock").unlink()
        for parent in (context.parent, context.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()

    def remove_caches(self) -> list[str]:
        """The wheel cache and proxy contexts: only worth keeping while the workspace has builds."""
        removed = []
        for name in ("wheels", "proxy", "mlflow"):
            folder = self.root / name
            if folder.is_dir():
                make_writable(folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"cache {folder}")
        return removed


def mlflow_tag(base_image: str) -> str:
    """``cmlplan/mlflow:<mlflow version>-<digest>``: the host's mlflow, so client and server agree."""
    digest = hashlib.sha256(json.dumps([mlflow_pins(), base_image, _platform()]).encode()).hexdigest()[:12]
    return f"cmlplan/mlflow:{installed_version('mlflow') or 'latest'}-{digest}"


def mlflow_pins() -> list[str]:
    """The registry image's packages, at the host's versions where the host has them."""
    pins = []
    for requirement in MLFLOW_PACKAGES:
        name = requirement.partition("[")[0]
        version = installed_version(name)
        pins.append(f"{requirement}=={version}" if version else requirement)
    return pins


def _check_python(requested: str) -> None:
    wanted = ".".join(str(requested).strip().split(".")[:2])
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted != IMAGE_PYTHON:
        raise BuildError(
            f"runtime python {requested} is not available on the docker provider: images run Python "
            f"{IMAGE_PYTHON} (set runtime.python: \"{IMAGE_PYTHON}\")"
        )
    if host != IMAGE_PYTHON:
        raise BuildError(
            f"the docker provider resolves wheels on the host, which runs Python {host}; "
            f"run cmlplan with Python {IMAGE_PYTHON}"
        )


def _platform() -> str:
    return f"{sys.platform}-{os.uname().machine}-cp{sys.version_info.major}{sys.version_info.minor}"


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    return env


def _clear(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            make_writable(child)
            shutil.rmtree(child)
        else:
            child.unlink()


def _link_tree(source: Path, dest: Path) -> None:
    """Hard-link (or copy) the wheels into a context, leaving markers out."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if not path.name.endswith(".whl"):
            continue
        target = dest / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    os.chmod(dest, 0o755)
    os.utime(dest, (_FIXED_MTIME, _FIXED_MTIME))


def _normalize(root: Path, *, fixed_mtime: bool) -> None:
    """World-readable files (the image runs as nobody), optionally with a fixed mtime."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            os.chmod(path, mode)
            if fixed_mtime:
                os.utime(path, (_FIXED_MTIME, _FIXED_MTIME))
        for name in dirnames:
            os.chmod(Path(dirpath, name), 0o755)
    os.chmod(root, 0o755)
    if fixed_mtime:
        for dirpath, _dirnames, _filenames in os.walk(root, topdown=False):
            os.utime(dirpath, (_FIXED_MTIME, _FIXED_MTIME))
