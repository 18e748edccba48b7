"""ApiKey: a user's key for calling models that have authentication on."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from .common import ENV_REFERENCE, Name, StrictModel
from .units import Duration


class ApiKeySpec(StrictModel):
    user: Name = Field(description="the Workspace user who owns the key")
    expires_in: Duration | None = Field(
        None, gt=0, description="lifetime from creation (default one year, capped by the Workspace)"
    )
    expires_at: datetime | None = Field(None, description="fixed expiry time (ISO 8601 with timezone)")
    value: str | None = Field(
        None,
        description=(
            "bring your own key as ${env:NAME}, of 128 bits or more by zxcvbn's estimate (e.g. from"
            " secrets.token_urlsafe(32)); by default cmlplan generates one and shows it once"
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ApiKeySpec:
        if self.expires_in is not None and self.expires_at is not None:
            raise ValueError("set expires_in or expires_at, not both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a timezone, e.g. 2027-01-01T00:00:00Z")
        if self.value is not None and not ENV_REFERENCE.match(self.value):
            raise ValueError("value must be an ${env:NAME} reference: a key is never written in a spec")
        return self
