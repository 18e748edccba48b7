"""One YAML document = one resource: the envelope every kind shares, and the parsed result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .apikey import ApiKeySpec
from .common import Lifecycle, Metadata
from .model import ModelSpec
from .moved import MovedSpec
from .project import ProjectSpec
from .proxy import ProxySpec
from .registry import ModelRegistrySpec
from .workspace import WorkspaceSpec

SPEC_BY_KIND: dict[str, type[BaseModel]] = {
    "Workspace": WorkspaceSpec,
    "Proxy": ProxySpec,
    "ModelRegistry": ModelRegistrySpec,
    "Project": ProjectSpec,
    "ApiKey": ApiKeySpec,
    "Model": ModelSpec,
    "Moved": MovedSpec,
}

ADDRESS_PREFIX = {
    "Workspace": "workspace",
    "Proxy": "proxy",
    "ModelRegistry": "registry",
    "Project": "project",
    "ApiKey": "apikey",
    "Model": "model",
    "Moved": "moved",
}

ENVELOPE_FIELDS = ("apiVersion", "kind", "metadata", "spec", "lifecycle")


@dataclass(frozen=True)
class Origin:
    """Where a document came from, for error messages."""

    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Resource:
    """A validated document: kind, identity, spec and where it was written."""

    kind: str
    metadata: Metadata
    spec: Any
    lifecycle: Lifecycle
    origin: Origin
    base_dir: str = field(default=".", compare=False)
    raw: Any = field(default=None, compare=False, repr=False)  # the YAML node, for positions of fields

    def where(self, *path: str | int) -> Origin:
        """file:line:column of a field of this document (the document's start if unknown)."""
        if self.raw is None or not hasattr(self.raw, "lc"):
            return self.origin
        from .yamlsource import position

        return position(self.raw, path, self.origin.file)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def address(self) -> str:
        prefix = ADDRESS_PREFIX[self.kind]
        if self.kind == "Model":
            return f"{prefix}.{self.metadata.project}/{self.metadata.name}"
        return f"{prefix}.{self.metadata.name}"
