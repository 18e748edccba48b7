"""What every kind shares: names, metadata, lifecycle rules and the strict model base."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API_VERSION = "cmlplan/v1"

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
    Field(description="a DNS-safe name: lower-case letters, digits and '-', at most 63 characters"),
]

ENV_REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


class StrictModel(BaseModel):
    """Specs reject unknown fields: a typo must fail loudly, not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Lifecycle(StrictModel):
    prevent_destroy: bool = Field(
        False, description="a plan that would destroy this resource fails, naming it"
    )
    ignore_changes: tuple[str, ...] = Field(
        (),
        description=(
            "attribute paths (e.g. deployment.replicas, description) whose spec changes and drift "
            "are not acted on"
        ),
    )


class Metadata(StrictModel):
    name: Name
    project: Name | None = Field(None, description="the project a Model belongs to (Model only)")
    labels: dict[str, str] = Field(default_factory=dict, description="free-form labels, kept in state")
    description: str | None = Field(
        None, min_length=1, max_length=200,
        description="a human name for a Model (CML's model name, spaces allowed), shown beside its DNS-safe address"
        " by plan, output and models; changing it is an in-place update (Model only)",
    )
