"""The provider protocol: four async verbs with frozen requests and results.

A provider turns planned attribute values into the real world and reads the real world back. It
never chooses an action (that is ``cmlplan.plan.decide_action``); it only says what it will set and
which attribute changes it cannot make in place. Adding a field to a request or result breaks no
signature. Optional abilities (logs, exec) belong in separate protocols, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CmlplanError
from ..specs.workspace import WorkspaceSpec

Attributes = dict[str, Any]
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


class ProviderContext(Frozen):
    """What every provider of a workspace shares: identity, folders and settings."""

    workspace_id: str
    spec_dir: str  # the folder the specs were loaded from
    data_dir: str  # where the provider keeps its files (<spec_dir>/.cmlplan)
    salt: str  # for hashing keys; not secret
    settings: WorkspaceSpec = Field(default_factory=WorkspaceSpec)  # the Workspace spec, typed


class ResourceRef(Frozen):
    address: str
    kind: str
    attributes: Attributes  # what state last recorded


class ReadRequest(Frozen):
    resources: tuple[ResourceRef, ...]


class ReadResult(Frozen):
    """Live attributes by address; None means it is gone. Addresses left out were not checked."""

    live: dict[str, Attributes | None]


class PlanRequest(Frozen):
    address: str
    kind: str
    current: Attributes | None  # refreshed (or last recorded) attributes; None when absent
    desired: Attributes | None  # from the specs; None when the resource is to go


class PlanResult(Frozen):
    planned: Attributes | None  # what will be set, computed values copied or "(known after apply)"
    requires_replace: tuple[str, ...] = ()  # dotted paths whose change cannot be made in place
    create_before_destroy: bool = False  # a replace starts the new one before stopping the old
    computed: tuple[str, ...] = ()  # attributes only apply knows (they may stay unknown until then)


class ApplyRequest(Frozen):
    address: str
    kind: str
    prior: Attributes | None  # None: create
    planned: Attributes | None  # None: delete
    replace: bool = False  # prior and planned are different objects (a replace, not an update)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)  # resolved ${env:} values
    progress: Progress = _quiet


class ApplyResult(Frozen):
    attributes: Attributes | None  # what to record; None after a delete
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)  # generated, shown once, never stored


@runtime_checkable
class Provider(Protocol):
    name: str
    kinds: frozenset[str]

    async def read(self, request: ReadRequest) -> ReadResult: ...

    async def plan(self, request: PlanRequest) -> PlanResult: ...

    async def apply(self, request: ApplyRequest) -> ApplyResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class GarbageCollecting(Protocol):
    """Optional: a provider that keeps build artifacts (images, venvs) after their build left the state.

    ``keep`` holds the build addresses the state still records (``build.iris/petal-width#3``);
    everything else the provider made for builds may go. Returns one line per thing removed.
    """

    async def collect_garbage(self, keep: set[str]) -> list[str]: ...


@runtime_checkable
class ReleasingLeftovers(Protocol):
    """Optional: a provider that can find what it runs but no state records (a killed run's).

    ``recorded`` holds every process name the state records for this provider; everything else
    of the workspace is removed, and the supervisor too when nothing is recorded. Returns one line
    per thing removed.
    """

    async def release_leftovers(self, recorded: set[str]) -> list[str]: ...


class ProviderError(CmlplanError):
    """A provider could not do what was asked; the message names the resource."""


class UnsupportedError(ProviderError):
    """The configuration asks for something this provider cannot do yet."""
