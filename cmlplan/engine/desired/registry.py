"""ModelRegistry: an MLflow server, by the workspace's provider (which must declare the kind)."""

from __future__ import annotations

from ...specs import Resource
from .world import Builder, constant


def add_registry(b: Builder, resource: Resource) -> None:
    b.add(resource.address, "registry", b.provider, (), constant(resource.spec.model_dump(mode="json")), resource.lifecycle)
