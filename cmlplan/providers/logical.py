"""Projects, API keys and models' access keys: resources that live in state only.

They have nothing running, so what is live is what was recorded; creating a model or an API key
generates its key here, hands the plaintext back once (ApplyResult.secrets) and records its salted
hash (what the proxy looks keys up by; output shows its first eight digits to tell keys apart).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..secrets import ACCESS_KEY_PREFIX, API_KEY_PREFIX, generate_secret, hash_secret
from ..values import UNKNOWN
from .base import (
    ApplyRequest,
    ApplyResult,
    Attributes,
    PlanRequest,
    PlanResult,
    ProviderContext,
    ReadRequest,
    ReadResult,
)

_COMPUTED = {
    "project": (),
    "registry": (),  # an external MLflow registry: recorded, nothing runs
    "model": ("access_key_hash",),
    "apikey": ("key_hash", "created_at", "expires"),
}


class LogicalProvider:
    name = "cmlplan"
    kinds = frozenset(_COMPUTED)

    def __init__(self, context: ProviderContext, now: Any = None) -> None:
        self.context = context
        self._now = now or (lambda: datetime.now(UTC))
        # a key without an expiry: the Workspace's default, capped by its maximum; a change of
        # either only moves `expires` (in place), the key itself stays
        self._default_lifetime = context.settings.limits.api_key_lifetime

    async def read(self, request: ReadRequest) -> ReadResult:
        return ReadResult(live={r.address: dict(r.attributes) for r in request.resources})

    async def plan(self, request: PlanRequest) -> PlanResult:
        if request.desired is None:
            return PlanResult(planned=None)
        current = request.current or {}
        planned = dict(request.desired)
        for key in _COMPUTED[request.kind]:
            if key not in planned:
                planned[key] = current.get(key, UNKNOWN)
        if request.kind == "apikey":
            planned["expires"] = _expiry(planned, current.get("created_at"), self._default_lifetime)
        return PlanResult(planned=planned, computed=_COMPUTED[request.kind])

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        if request.planned is None:
            return ApplyResult(attributes=None)
        attributes: dict[str, Any] = dict(request.planned)
        fresh = request.prior is None or request.replace
        secrets: dict[str, str] = {}
        if request.kind == "model":
            if fresh or attributes.get("access_key_hash") == UNKNOWN:
                key = generate_secret(ACCESS_KEY_PREFIX)
                attributes["access_key_hash"] = hash_secret(self.context.salt, key)
                secrets["access_key"] = key
        elif request.kind == "apikey":
            if fresh or attributes.get("created_at") == UNKNOWN:
                attributes["created_at"] = self._now().isoformat(timespec="seconds")
            value = request.secrets.get("value")
            if value is not None:
                attributes["key_hash"] = hash_secret(self.context.salt, value)  # its strength was checked at plan
            elif fresh or attributes.get("key_hash") == UNKNOWN:
                key = generate_secret(API_KEY_PREFIX)
                attributes["key_hash"] = hash_secret(self.context.salt, key)
                secrets["api_key"] = key
            attributes["expires"] = _expiry(attributes, attributes["created_at"], self._default_lifetime)
        return ApplyResult(attributes=attributes, secrets=secrets)

    async def close(self) -> None:
        return None


def _expiry(attributes: Attributes, created_at: str | None, default_lifetime: float) -> str:
    if attributes.get("expires_at"):
        return str(attributes["expires_at"])
    if not created_at or created_at == UNKNOWN:
        return UNKNOWN
    lifetime = attributes.get("expires_in") or default_lifetime
    return (datetime.fromisoformat(created_at) + timedelta(seconds=float(lifetime))).isoformat(timespec="seconds")
