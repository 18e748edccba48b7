"""Moved: a model renamed or moved to another project, as Terraform's ``moved`` block.

State follows the rename (the model, its builds, its deployment and its key file), so the model
keeps its deployment id, replicas and access key instead of being destroyed and created again.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .common import StrictModel

_MODEL_ADDRESS = re.compile(r"^model\.[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class MovedSpec(StrictModel):
    from_: str = Field(alias="from", description="the model's old address, e.g. model.iris/petal-width")
    to: str = Field(description="its new address, e.g. model.flowers/petal-width")

    @field_validator("from_", "to")
    @classmethod
    def _model_address(cls, value: str) -> str:
        if not _MODEL_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a model address (model.<project>/<name>)")
        return value
