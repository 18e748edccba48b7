"""Providers by name: the Workspace's ``provider:`` picks one."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import Provider, ProviderContext, UnsupportedError

Factory = Callable[[ProviderContext], Provider]

_BUILTIN = {
    "local": "cmlplan.providers.local.provider:LocalProvider",
    "docker": "cmlplan.providers.docker.provider:DockerProvider",
    "kubernetes": "cmlplan.providers.kubernetes.provider:KubernetesProvider",
}
_FACTORIES: dict[str, Factory] = {}


def register_provider(name: str, factory: Factory) -> None:
    """Add or override a provider (tests use this for the FakeProvider)."""
    _FACTORIES[name] = factory


def create_provider(name: str, context: ProviderContext) -> Provider:
    if name in _FACTORIES:
        return _FACTORIES[name](context)
    target = _BUILTIN.get(name)
    if target is None:
        raise UnsupportedError(
            f"provider {name!r} is not supported yet by this cmlplan (available: {', '.join(available())})"
        )
    module_name, _, attribute = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory(context)


def available() -> list[str]:
    return sorted({*_BUILTIN, *_FACTORIES})
