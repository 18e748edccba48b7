"""The pieces every kind's desired-node module shares: the Node, the Builder that collects them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CmlplanError
from ...providers.source import FileEntry
from ...specs import Config
from ...specs.common import Lifecycle
from ...specs.proxy import ProxySpec
from ...state.document import StateDocument
from ..addresses import model_of
from ..fingerprints import SecretFingerprints

Known = Mapping[str, dict[str, Any] | None]
LOGICAL = "cmlplan"


@dataclass
class Node:
    address: str
    kind: str
    provider: str
    dependencies: tuple[str, ...]
    compute: Callable[[Known], dict[str, Any]]
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    secrets: Callable[[], dict[str, str]] = field(default=lambda: {})
    notes: tuple[str, ...] = ()
    blocked: str | None = None  # why this node cannot be planned now; the plan fails if it is selected
    check: Callable[[], str | None] | None = None  # a slower ``blocked``, asked only when it is selected

    def problem(self) -> str | None:
        """Why this selected node cannot be planned now (None: it can)."""
        if self.blocked is None and self.check is not None:
            self.blocked = self.check()
        return self.blocked


class SourceMissingError(CmlplanError):
    """A model's source file or requirements file is not where the spec says."""


class Builder:
    """What the kind modules add their nodes to, with what they share (state, salt, fingerprints,
    the proxy spec)."""

    def __init__(
        self,
        config: Config,
        state: StateDocument | None,
        salt: str,
        provider: str,
        environ: Mapping[str, str] | None,
        fingerprints: SecretFingerprints,
        targets: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.targets = targets
        self.state = state
        self.salt = salt
        self.fingerprints = fingerprints
        self.provider = provider
        self.environ = environ
        self.nodes: dict[str, Node] = {}
        self.warnings: list[str] = []
        self.manifests: dict[Path, dict[str, FileEntry]] = {}
        self.history = _builds_by_model(state)
        proxies = config.of_kind("Proxy")
        self.proxy_spec: ProxySpec = proxies[0].spec if proxies else ProxySpec()
        self.excluded = {Path(f) for f in config.files}

    def add(
        self, address: str, kind: str, provider: str, deps: tuple[str, ...], compute: Callable[[Known], dict[str, Any]],
        lifecycle: Lifecycle | None = None, **extra: Any,
    ) -> None:
        self.nodes[address] = Node(address, kind, provider, deps, compute, lifecycle or Lifecycle(), **extra)


    def builds_needed(self, model_address: str) -> bool:
        """Whether a plan with these ``-target``s can reach the model's build and deployment.

        Only the targets themselves and the proxy (which routes every deployment) depend on them,
        so a plan targeted elsewhere need not ask a registry what a registered model points at.
        """
        if not self.targets:
            return True
        key = model_address.removeprefix("model.")
        for target in self.targets:
            kind, _, rest = target.partition(".")
            if kind == "proxy" or rest.split("#", 1)[0] == key or not rest:
                return True
        return False


def constant(attributes: dict[str, Any]) -> Callable[[Known], dict[str, Any]]:
    return lambda _known: attributes


def _builds_by_model(state: StateDocument | None) -> dict[str, dict[int, dict[str, Any]]]:
    """Every recorded build, by model address then number: one pass over the state."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    if state is None:
        return found
    for address, resource in state.resources.items():
        if resource.kind == "build":
            found.setdefault(model_of(address), {})[int(address.rsplit("#", 1)[1])] = resource.attributes
    return found
