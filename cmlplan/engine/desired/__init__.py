"""What the specs ask for, as graph nodes whose attributes are computed from their dependencies.

Attribute values that depend on other resources (a model's access key hash in its deployment, API
key hashes in the proxy) are read from ``known``: planned values while planning, applied values
while applying, so apply always hands the provider what is really there.

One module per kind: a new kind adds a module and a line in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ...specs import Config, Resource
from ...state.document import StateDocument
from ..fingerprints import SecretFingerprints
from .apikey import add_apikey
from .model import add_model
from .notes import build_notes
from .project import add_project
from .proxy import add_proxy
from .registry import add_registry
from .world import LOGICAL, Builder, Known, Node, SourceMissingError

KINDS: dict[str, Callable[[Builder, Resource], None]] = {
    "Project": add_project,
    "ApiKey": add_apikey,
    "Model": add_model,
    "ModelRegistry": add_registry,
}

__all__ = ["KINDS", "LOGICAL", "DesiredWorld", "Known", "Node", "SourceMissingError", "build_notes", "desired_world"]


@dataclass
class DesiredWorld:
    nodes: dict[str, Node]
    warnings: list[str]


def desired_world(
    config: Config,
    state: StateDocument | None,
    salt: str,
    provider: str,
    environ: Mapping[str, str] | None,
    fingerprints: SecretFingerprints,
    targets: tuple[str, ...] = (),
) -> DesiredWorld:
    """Every node the specs imply, including each model's build and deployment, and the proxy
    (a registered model's only when ``targets`` can reach them: see ``Builder.builds_needed``)."""
    builder = Builder(config, state, salt, provider, environ, fingerprints, targets)
    for resource in config.resources.values():
        add = KINDS.get(resource.kind)
        if add is not None:
            add(builder, resource)
    add_proxy(builder)  # after the others: it depends on every key, project and deployment
    return DesiredWorld(builder.nodes, builder.warnings)
