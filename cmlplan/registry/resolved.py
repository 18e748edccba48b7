"""A registered model version as the plan pins it, and the digest of its artifacts.

The digest covers every artifact's path and size plus the bytes of ``MLmodel`` (which carries the
logged model's uuid) and ``requirements.txt``: enough to tell two logged models apart without
downloading the weights at plan time. The build recomputes it from the files it downloaded and
refuses a model whose artifacts changed since the plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

DIGESTED_FILES = ("MLmodel", "requirements.txt")


@dataclass(frozen=True)
class ResolvedVersion:
    """What ``registered: {name, version | alias}`` points at now."""

    registry: str  # the ModelRegistry's name in the specs
    uri: str  # its tracking URI when resolved
    name: str
    version: int
    alias: str | None
    run_id: str | None
    source: str | None  # the version's source (models:/m-..., runs:/...)
    artifacts_uri: str  # where the version's files are downloaded from
    artifact_digest: str
    requirements_text: str
    python: str | None  # from python_env.yaml, when the model carries one
    experiment_id: str | None = None
    run_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)  # MLflow dataset inputs of the run

    def attributes(self) -> dict[str, Any]:
        """The JSON-shaped record kept in a build's attributes (lineage reads it from state)."""
        data = asdict(self)
        data.pop("requirements_text")
        return data

    def summary(self) -> dict[str, Any]:
        """What a deployment shows of it: enough for a reviewer to see which version goes live."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "artifact_digest": self.artifact_digest,
        }


def artifact_digest(sizes: Mapping[str, int | None], contents: Mapping[str, bytes]) -> str:
    """``sha256:<hex>`` over sorted (path, size) pairs and the bytes of the DIGESTED_FILES present."""
    digest = hashlib.sha256()
    for path in sorted(sizes):
        digest.update(f"{path}\0{sizes[path]}\n".encode())
    for name in DIGESTED_FILES:
        if name in contents:
            digest.update(name.encode() + b"\0" + hashlib.sha256(contents[name]).digest())
    return "sha256:" + digest.hexdigest()


def python_of(python_env: str) -> str | None:
    """The ``python: 3.11.7`` line of an MLflow python_env.yaml, as ``3.11`` (None when absent)."""
    for line in python_env.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "python":
            parts = value.strip().strip("'\"").split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return f"{parts[0]}.{parts[1]}"
    return None
