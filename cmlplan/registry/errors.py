"""Registry errors: one line naming the registry (address and URI) and what is wrong."""

from __future__ import annotations

from ..errors import CmlplanError


class RegistryError(CmlplanError):
    """The registry does not answer, or has no such model, version or alias."""
