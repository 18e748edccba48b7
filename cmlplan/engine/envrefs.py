"""${env:NAME} values: resolved only when needed (fingerprinted for plans by ``fingerprints``), never stored."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import CmlplanError
from ..specs import env_reference


class EnvReferenceError(CmlplanError):
    """An ${env:NAME} the specs need is not set."""


def resolve(value: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """The value itself, or what ${env:NAME} points at (an error naming ``where`` when unset)."""
    name = env_reference(value)
    if name is None:
        return value
    environ = os.environ if environ is None else environ
    if name not in environ:
        raise EnvReferenceError(f"{where}: environment variable {name} is not set (referenced as ${{env:{name}}})")
    return environ[name]
