"""Talk to an MLflow tracking/registry server: does it answer, what a version or alias points at,
and download a version's artifacts.

mlflow is imported lazily (it takes seconds) and its HTTP client is told to give up fast: a plan
against a registry that does not answer should fail in seconds with one line, not retry for minutes.
Every failure is a one-line ``RegistryError`` naming ``where`` (the spec origin and address).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .availability import MLFLOW_HINT, mlflow_available
from .errors import RegistryError
from .resolved import DIGESTED_FILES, ResolvedVersion, artifact_digest, python_of

_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # A server with S3 artifacts offers presigned URLs, so clients would fetch from the S3 endpoint
    # themselves: a name only the server resolves (host.docker.internal, a cluster-internal gateway)
    # would hang the build. Through the server, only the server needs to reach S3.
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
}
HEALTH_TIMEOUT = 5.0


class RegistryClient:
    """One registry (``registry`` is its name in the specs, ``uri`` its tracking URI)."""

    def __init__(self, registry: str, uri: str, where: str) -> None:
        self.registry = registry
        self.uri = uri.rstrip("/")
        self.where = where
        self._client: Any = None

    # -- reachability -----------------------------------------------------------------------------

    def check_answers(self, timeout: float = HEALTH_TIMEOUT) -> None:
        """GET <uri>/health; a RegistryError naming the registry when it does not answer OK."""
        problem = health_problem(self.uri, timeout)
        if problem is not None:
            raise RegistryError(f"{self.where}: registry {self.registry} at {self.uri} does not answer ({problem})")

    # -- resolution -------------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> ResolvedVersion:
        """The version ``version`` of ``name``, or the one ``alias`` points at, with its run and digest."""
        self.check_answers()
        client = self._mlflow_client()
        label = f"alias {alias!r}" if alias else f"version {version}"
        try:
            found = (
                client.get_model_version_by_alias(name, alias)
                if alias
                else client.get_model_version(name, str(version))
            )
        except Exception as exc:  # mlflow raises MlflowException/RestException and requests errors
            raise self._not_found(exc, name, label) from None
        if str(getattr(found, "status", "READY")) != "READY":
            raise RegistryError(f"{self.where}: {name} version {found.version} is {found.status}, not READY yet")
        number = int(found.version)
        try:
            artifacts_uri = client.get_model_version_download_uri(name, str(number))
            sizes = self._sizes(artifacts_uri)
            contents = self._small_files(artifacts_uri, sizes)
            run = client.get_run(found.run_id) if found.run_id else None
        except RegistryError:
            raise
        except Exception as exc:
            raise RegistryError(f"{self.where}: {name} version {number}: cannot read it from {self.uri} ({_brief(exc)})") from None
        if "MLmodel" not in sizes:
            raise RegistryError(f"{self.where}: {name} version {number} has no MLmodel file at {artifacts_uri}; not an MLflow model")
        return ResolvedVersion(
            registry=self.registry,
            uri=self.uri,
            name=name,
            version=number,
            alias=alias,
            run_id=found.run_id or None,
            source=found.source,
            artifacts_uri=artifacts_uri,
            artifact_digest=artifact_digest(sizes, contents),
            requirements_text=contents.get("requirements.txt", b"").decode("utf-8", "replace"),
            python=python_of(contents.get("python_env.yaml", b"").decode("utf-8", "replace")),
            experiment_id=run.info.experiment_id if run else None,
            run_name=run.info.run_name if run else None,
            params=dict(run.data.params) if run else {},
            metrics={k: float(v) for k, v in run.data.metrics.items()} if run else {},
            datasets=_datasets(run),
        )

    def download(self, artifacts_uri: str, expected_digest: str, dest: Path) -> Path:
        """Download every artifact into ``dest``; refuse when they are not what the plan saw."""
        self._mlflow_client()
        import mlflow.artifacts

        try:
            sizes = self._sizes(artifacts_uri)
            dest.mkdir(parents=True, exist_ok=True)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=artifacts_uri, tracking_uri=self.uri, dst_path=str(dest)
                )
            )
        except Exception as exc:
            raise RegistryError(f"{self.where}: cannot download {artifacts_uri} from {self.uri} ({_brief(exc)})") from None
        on_disk = {p.relative_to(local).as_posix(): p.stat().st_size for p in local.rglob("*") if p.is_file()}
        if any(on_disk.get(path) != size for path, size in sizes.items() if size is not None):
            raise RegistryError(f"{self.where}: the files downloaded from {artifacts_uri} do not match their listing")
        contents = {name: (local / name).read_bytes() for name in DIGESTED_FILES if (local / name).is_file()}
        found = artifact_digest(sizes, contents)
        if found != expected_digest:
            raise RegistryError(
                f"{self.where}: the artifacts at {artifacts_uri} changed since the plan ({expected_digest} -> {found}); plan again"
            )
        return local

    # -- helpers ----------------------------------------------------------------------------------

    def _mlflow_client(self) -> Any:
        if self._client is None:
            if not mlflow_available():
                raise RegistryError(f"{self.where}: registry {self.registry} {MLFLOW_HINT}")
            for key, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def _sizes(self, artifacts_uri: str) -> dict[str, int | None]:
        """Every file under ``artifacts_uri`` (relative path -> size), walking directories."""
        import mlflow.artifacts

        found: dict[str, int | None] = {}
        pending = [""]
        while pending:
            folder = pending.pop()
            uri = f"{artifacts_uri}/{folder}" if folder else artifacts_uri
            for entry in mlflow.artifacts.list_artifacts(artifact_uri=uri, tracking_uri=self.uri):
                # stores differ in what the path is relative to: keep the last part, under ``folder``
                path = f"{folder}/{entry.path.rsplit('/', 1)[-1]}" if folder else entry.path.rsplit("/", 1)[-1]
                if entry.is_dir:
                    pending.append(path)
                else:
                    found[path] = entry.file_size
        return found

    def _small_files(self, artifacts_uri: str, sizes: dict[str, int | None]) -> dict[str, bytes]:
        import mlflow.artifacts

        contents: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="cmlplan-mlmodel-") as tmp:
            for name in (*DIGESTED_FILES, "python_env.yaml"):
                if name in sizes:
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{artifacts_uri}/{name}", tracking_uri=self.uri, dst_path=tmp
                    )
                    contents[name] = Path(path).read_bytes()
        return contents

    def _not_found(self, exc: Exception, name: str, label: str) -> RegistryError:
        code = getattr(exc, "error_code", "")
        if code != "RESOURCE_DOES_NOT_EXIST" and "not found" not in str(exc).lower():
            return RegistryError(f"{self.where}: cannot read {name} {label} from {self.uri} ({_brief(exc)})")
        try:
            versions = sorted(int(v.version) for v in self._client.search_model_versions(f"name='{name}'"))
        except Exception:
            versions = []
        if not versions:
            return RegistryError(f"{self.where}: registry {self.registry} has no registered model named {name!r}")
        listed = ", ".join(str(v) for v in versions)
        return RegistryError(f"{self.where}: registered model {name!r} has no {label} (versions: {listed})")


def health_problem(uri: str, timeout: float = HEALTH_TIMEOUT) -> str | None:
    """None when ``<uri>/health`` answers 200, else why not, in a few words."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:  # noqa: S310
            if reply.status == 200:
                return None
            return f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(getattr(reason, "strerror", None) or reason)


def _datasets(run: Any) -> list[dict[str, Any]]:
    if run is None or getattr(run, "inputs", None) is None:
        return []
    found = []
    for item in run.inputs.dataset_inputs or []:
        dataset = item.dataset
        found.append(
            {
                "name": dataset.name,
                "digest": dataset.digest,
                "source_type": dataset.source_type,
                "source": dataset.source,
                "context": next((t.value for t in item.tags or [] if t.key == "mlflow.data.context"), None),
            }
        )
    return found


def _brief(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
