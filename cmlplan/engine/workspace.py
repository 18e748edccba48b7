"""A workspace opened from a spec folder: its config, state backend, providers and key folder.

This is the engine's front door for the CLI: plan, apply and destroy read top to bottom here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CmlplanError
from ..plan import Action, Plan
from ..plan.jsonformat import plan_to_dict
from ..providers.base import Provider, ProviderContext
from ..providers.logical import LogicalProvider
from ..providers.registry import create_provider
from ..specs import Config, load_config
from ..state.backend import StateBackend
from ..state.document import StateDocument
from ..state.lock import LockInfo
from ..state.open import open_backend
from .collection import collector_paused
from .desired import LOGICAL
from .keys import KeyFolder
from .planner import specs_fingerprint
from .session import Session


class StalePlanError(CmlplanError):
    """A saved plan that no longer matches the state or the specs."""


@dataclass
class Workspace:
    directory: Path
    config: Config
    backend: StateBackend
    environ: Mapping[str, str]

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str] = ".",
        environ: Mapping[str, str] | None = None,
        backend: StateBackend | None = None,
    ) -> Workspace:
        """Load the specs in ``directory``; state lives in ``backend`` (default: the spec's state file)."""
        folder = Path(directory).resolve()
        with collector_paused():
            config = load_config(directory)
        environ = os.environ if environ is None else environ
        if backend is None:
            backend = open_backend(config.workspace_spec.state, folder, environ, config.workspace.name)
        return cls(folder, config, backend, environ)

    @property
    def name(self) -> str:
        return self.config.workspace.name

    @property
    def provider_name(self) -> str:
        return self.config.workspace_spec.provider

    @property
    def data_dir(self) -> Path:
        return self.directory / ".cmlplan"

    @property
    def keys(self) -> KeyFolder:
        return KeyFolder(self.data_dir / "keys")

    def read_state(self) -> StateDocument | None:
        with collector_paused():
            return self.backend.read()

    def specs_hash(self) -> str:
        return specs_fingerprint(self.config.files)

    def context(self, state: StateDocument) -> ProviderContext:
        return ProviderContext(
            workspace_id=self.name,
            spec_dir=str(self.directory),
            data_dir=str(self.data_dir),
            salt=state.salt,
            settings=self.config.workspace_spec,
        )

    def providers(self, state: StateDocument, names: set[str] | None = None) -> dict[str, Provider]:
        """The logical provider plus the workspace's own (and any other named in state)."""
        context = self.context(state)
        wanted = {self.provider_name} | (names or set())
        wanted.discard(LOGICAL)
        found: dict[str, Provider] = {LOGICAL: LogicalProvider(context)}
        for name in sorted(wanted):
            found[name] = create_provider(name, context)
        return found

    @contextmanager
    def locked(self, operation: str, wait: float = 0.0) -> Iterator[LockInfo]:
        with self.backend.lock(LockInfo.create(operation), wait=wait) as info:
            yield info

    def session(self, state: StateDocument | None) -> Session:
        """The session that owns the providers for one command (``async with``)."""
        return Session(self, state)


def check_saved_plan(saved: Plan, fresh: Plan, state: StateDocument | None, specs_hash: str) -> None:
    """Refuse a saved plan made against another state, older specs, or a world that moved since."""
    lineage = state.lineage if state else None
    serial = state.serial if state else None
    if saved.lineage != lineage:
        if saved.lineage is None:
            raise StalePlanError(
                "the saved plan was made when there was no state, but state exists now; plan again"
            )
        raise StalePlanError(
            f"the saved plan was made against another state (lineage {saved.lineage}, this state is {lineage})"
        )
    if saved.serial != serial:
        raise StalePlanError(
            f"the saved plan is stale: state serial was {saved.serial} when it was made and is {serial} now; plan again"
        )
    if saved.specs_hash != specs_hash:
        raise StalePlanError("the specs changed since the plan was saved; plan again")
    before = _actions(saved)
    after = _actions(fresh)
    if before != after:
        moved = sorted(set(before.items()) ^ set(after.items()))
        address = moved[0][0] if moved else "?"
        raise StalePlanError(
            f"the live world changed since the plan was saved ({address}: planned {before.get(address, 'nothing')},"
            f" now {after.get(address, 'nothing')}); plan again"
        )
    for change in fresh.changes:
        old = saved.change_for(change.address)
        if old is not None and plan_to_dict_change(old) != plan_to_dict_change(change):
            raise StalePlanError(
                f"{change.address} would now change differently than the saved plan says; plan again"
            )


def plan_to_dict_change(change: object) -> object:
    plan = Plan(changes=(change,))  # type: ignore[arg-type]
    entry = plan_to_dict(plan)["resource_changes"][0]
    return {"action": entry["action"], "after": entry["after"]}


def _actions(plan: Plan) -> dict[str, str]:
    return {c.address: c.action.value for c in plan.changes if c.action is not Action.NOOP}
