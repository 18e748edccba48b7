"""Project: a group of models and the people who may call them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Name, StrictModel

Role = Literal["owner", "editor", "viewer"]


class ProjectSpec(StrictModel):
    description: str = Field("", description="what the project is for")
    collaborators: dict[Name, Role] = Field(
        default_factory=dict, description="user -> role (owner, editor, viewer); all three may call models"
    )
