"""Project: collaborators and their roles; it lives in state only."""

from __future__ import annotations

from ...specs import Resource
from .world import LOGICAL, Builder, constant


def add_project(b: Builder, resource: Resource) -> None:
    spec = resource.spec
    attributes = {"description": spec.description, "collaborators": dict(sorted(spec.collaborators.items()))}
    b.add(resource.address, "project", LOGICAL, (), constant(attributes), resource.lifecycle)
