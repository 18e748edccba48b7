"""Fingerprints of ``${env:...}`` values, compared with what state recorded.

A plan must see that a secret changed without showing it, and state must not let anyone confirm a
guessed value offline. So a fingerprint is an HMAC under the workspace's fingerprint key
(``cmlplan.secrets.FingerprintKey``), which lives in ``.cmlplan/keys/`` (or ``CMLPLAN_FINGERPRINT_KEY``)
and never in state, plans, routes or logs. Per recorded fingerprint:

- made with the key at hand: compared as it is;
- the older form, SHA-256(salt + value): compared by recomputing that, and when the value is
  unchanged rewritten in the keyed form (a state upgrade: nothing running changes);
- made with another key, or no key here: the recorded one is kept and the value counts as not
  compared; the plan says so in one line, and apply refuses rather than miss a change.

The key is created on first need: when none is given and state records no keyed fingerprint
(outside what this run replaces, so a lost key is recovered with ``-replace``), and only beside a
state file: a shared state (PostgreSQL) is planned and applied from several machines, which must
all be given the same key (a key made on a CI runner would be lost with it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..plan.diff import deep_copy
from ..secrets import (
    FINGERPRINT_PREFIX,
    FingerprintKey,
    fingerprint_key_id,
    is_legacy_fingerprint,
    legacy_fingerprint,
)
from ..specs import env_reference
from ..state.document import StateDocument
from ..values import UNKNOWN
from .keys import FINGERPRINT_KEY_ENV, KeyFolder

Path_ = tuple[str, ...]


class SecretFingerprints:
    """Fingerprints for one plan; collects the upgrades and what could not be compared."""

    def __init__(
        self,
        keys: KeyFolder,
        environ: Mapping[str, str],
        salt: str,
        state: StateDocument | None,
        replacing: frozenset[str] = frozenset(),
        may_create: bool = True,
    ) -> None:
        self.keys = keys
        self.environ = environ
        self.salt = salt
        self.state = state
        self.replacing = replacing
        self.may_create = may_create
        self._key: FingerprintKey | None = None
        self._looked = False
        self.key_where = ""  # where the key came from (the variable's name or the file's path)
        self.created: Path | None = None  # the key file this run created
        self.upgrades: dict[str, dict[Path_, str]] = {}  # address -> path -> keyed fingerprint
        self.uncompared: dict[str, list[Path_]] = {}  # recorded with another key, or no key here
        self.unkeyed: dict[str, list[Path_]] = {}  # new values to fingerprint, and no key here
        self.recorded_ids: set[str] = set()  # key ids of the fingerprints not compared

    # -- the key ----------------------------------------------------------------------------------

    @property
    def key(self) -> FingerprintKey | None:
        """The key at hand: given, found in the key folder, or created on first need."""
        if not self._looked:
            self._looked = True
            self._key, self.key_where = self.keys.fingerprint_key(self.environ)
            if self._key is None and self.may_create and not set(recorded_key_ids(self.state, skip=self.replacing)):
                self._key = self.keys.create_fingerprint_key()
                self.created = self.keys.fingerprint_key_path
                self.key_where = str(self.created)
        return self._key

    # -- fingerprints -----------------------------------------------------------------------------

    def of(self, address: str, path: Path_, value: str) -> str:
        """The fingerprint to plan for the resolved ``value`` at ``address``'s attribute ``path``."""
        prior = None if address in self.replacing else _get(self.state, address, path)
        key = self.key
        if is_legacy_fingerprint(prior):
            if legacy_fingerprint(self.salt, value) == prior:
                if key is None:
                    return str(prior)  # unchanged; rewritten once a key is at hand
                fresh = key.fingerprint(value)
                self.upgrades.setdefault(address, {})[path] = fresh
                return fresh
            prior = None  # changed: fingerprint it as a new value
        recorded_id = fingerprint_key_id(prior)
        if recorded_id is not None and (key is None or recorded_id != key.id):
            self.uncompared.setdefault(address, []).append(path)
            self.recorded_ids.add(recorded_id)
            return str(prior)
        if key is None:
            self.unkeyed.setdefault(address, []).append(path)
            return UNKNOWN
        return key.fingerprint(value)

    # -- what the plan says -----------------------------------------------------------------------

    def problem(self, selected: set[str] | None = None) -> str | None:
        """One line on the secret values this plan could not compare (None when all were), for
        the plan's warnings; apply refuses with it."""
        uncompared = {a: p for a, p in self.uncompared.items() if selected is None or a in selected}
        unkeyed = {a: p for a, p in self.unkeyed.items() if selected is None or a in selected}
        count = sum(len(p) for p in uncompared.values()) + sum(len(p) for p in unkeyed.values())
        if not count:
            return None
        addresses = sorted({*uncompared, *unkeyed})
        shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
        recorded = ", ".join(sorted(self.recorded_ids))
        values = f"{count} secret value{'s' if count != 1 else ''} of {shown}"
        if self._key is None and not recorded and not set(recorded_key_ids(self.state)):
            return (
                f"{values} cannot be fingerprinted: the state is shared and no fingerprint key is given;"
                f" make one once (openssl rand -hex 32) and give it to every machine that plans or applies,"
                f" as {FINGERPRINT_KEY_ENV} or in .cmlplan/keys/fingerprint-key"
            )
        if self._key is None:
            why = "there is no fingerprint key here"
        else:
            why = f"the fingerprint key here ({self.key_where}) is {self._key.id}"
        made = f" (recorded with fingerprint key {recorded})" if recorded else ""
        return (
            f"{values} not compared{made}: {why};"
            f" set {FINGERPRINT_KEY_ENV} to the contents of .cmlplan/keys/fingerprint-key from where"
            " apply runs (if that key is lost, apply with -replace for each of these)"
        )

    def notes(self, selected: set[str] | None = None) -> list[str]:
        found = []
        if self.created is not None:
            found.append(
                f"created the workspace's fingerprint key {self.created} (it keys the fingerprints of"
                f" ${{env:...}} values); runners without this folder, such as CI, need it as {FINGERPRINT_KEY_ENV}"
            )
        problem = self.problem(selected)
        if problem:
            found.append(problem)
        return found


def recorded_key_ids(state: StateDocument | None, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """The key ids of every keyed fingerprint state records (outside ``skip``)."""
    if state is None:
        return
    for address, resource in state.resources.items():
        if address in skip:
            continue
        for text in _strings(resource.attributes):
            if text.startswith(FINGERPRINT_PREFIX):
                found = fingerprint_key_id(text)
                if found is not None:
                    yield found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _get(state: StateDocument | None, address: str, path: Path_) -> Any:
    if state is None or address not in state.resources:
        return None
    value: Any = state.resources[address].attributes
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def apply_upgrades(state: StateDocument, upgrades: Mapping[str, Mapping[Path_, str]]) -> list[str]:
    """Rewrite the recorded fingerprints in ``upgrades`` (in memory; the next save writes them) and
    drop what older cmlplan derived from secrets without a key: the unsalted key fingerprints, and
    (docker) the environment hashes of replicas whose environment holds ${env:} values. Returns the
    addresses changed."""
    changed = []
    for address, resource in list(state.resources.items()):
        attributes = resource.attributes
        patched: dict[str, Any] | None = None
        for old in _LEGACY_LABELS.get(resource.kind, ()):
            if old in attributes:
                patched = patched if patched is not None else deep_copy(attributes)
                del patched[old]
        if resource.kind == "deployment" and _legacy_env_hashes(attributes):
            patched = patched if patched is not None else deep_copy(attributes)
            for process in patched["processes"]:
                if isinstance(process, dict) and _LEGACY_ENV_HASH.match(str(process.get("env_hash", ""))):
                    # the container keeps running; without a recorded hash its environment is not compared
                    del process["env_hash"]
        for path, fresh in (upgrades.get(address) or {}).items():
            patched = patched if patched is not None else deep_copy(attributes)
            _set(patched, path, fresh)
        if patched is not None:
            state.set_resource(address, resource.model_copy(update={"attributes": patched}))
            changed.append(address)
    return sorted(changed)


# SHA-256(key)[:8], unsalted, stored by older cmlplan for output; a guessing oracle for a weak key
_LEGACY_LABELS = {"model": ("access_key_fingerprint",), "apikey": ("key_fingerprint",)}


# a docker replica's environment hash from before secret values were left out of it: 24 hex digits
# of SHA-256(salt + the whole environment), so a weak secret in it could be guessed offline
_LEGACY_ENV_HASH = re.compile(r"^[0-9a-f]{24}$")


def _legacy_env_hashes(attributes: Mapping[str, Any]) -> bool:
    env = attributes.get("env") or {}
    if not isinstance(env, dict) or not any(isinstance(v, str) and env_reference(v) for v in env.values()):
        return False
    processes = attributes.get("processes")
    return isinstance(processes, list) and any(
        isinstance(p, dict) and _LEGACY_ENV_HASH.match(str(p.get("env_hash", ""))) for p in processes
    )


def _set(target: dict[str, Any], path: Path_, value: str) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
