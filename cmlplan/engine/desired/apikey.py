"""ApiKey: a user's key for calling models; the secret is generated (or read) at apply.

A user-supplied value (``${env:NAME}``) is hashed as the proxy looks it up (salted SHA-256), so
the plan sees it change; that hash is only safe for a key nobody can guess, so a value estimated
under 128 bits is refused here, naming the spec line and how to make a good one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ...errors import CmlplanError
from ...secrets import hash_secret, key_strength_problem
from ...specs import Config, Resource, env_reference
from ..envrefs import resolve
from .world import LOGICAL, Builder, constant


class WeakKeyError(CmlplanError):
    """A user-supplied API key with too little entropy to be hashed where others can read it."""


def add_apikey(b: Builder, resource: Resource) -> None:
    spec = resource.spec
    attributes: dict[str, Any] = {
        "user": spec.user,
        "expires_in": spec.expires_in,
        "expires_at": spec.expires_at.isoformat() if spec.expires_at else None,
        "value_ref": spec.value,
    }
    secrets: Callable[[], dict[str, str]] = lambda: {}  # noqa: E731
    if spec.value:
        where = f"{resource.where('spec', 'value')}: {resource.address}: spec.value"
        value = resolve(spec.value, where, b.environ)
        check_user_key(value, where, (resource.name, spec.user, b.config.workspace.name))
        attributes["key_hash"] = hash_secret(b.salt, value)
        secrets = lambda: {"value": value}  # noqa: E731
    b.add(resource.address, "apikey", LOGICAL, (), constant(attributes), resource.lifecycle, secrets=secrets)


def check_user_key(value: str, where: str, context: tuple[str, ...] = ()) -> None:
    """Refuse a user-supplied key estimated under 128 bits (``where`` names the spec line)."""
    problem = key_strength_problem(value, context)
    if problem:
        raise WeakKeyError(f"{where}: {problem}")


def weak_user_keys(config: Config, environ: Mapping[str, str]) -> list[str]:
    """One line per ApiKey whose ``${env:...}`` value is set and too weak (for ``cmlplan validate``,
    which needs no environment: an unset value is plan's to report)."""
    problems = []
    for resource in config.of_kind("ApiKey"):
        name = env_reference(resource.spec.value or "")
        if name is None or name not in environ:
            continue
        problem = key_strength_problem(environ[name], (resource.name, resource.spec.user, config.workspace.name))
        if problem:
            problems.append(f"{resource.where('spec', 'value')}: {resource.address}: spec.value: {problem}")
    return problems
