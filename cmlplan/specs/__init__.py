"""Specs: one pydantic model per kind and the YAML loader that names file:line:column on errors."""

from .config import Config
from .document import SPEC_BY_KIND, Origin, Resource
from .errors import SpecError
from .loader import load_config
from .model import env_reference

__all__ = ["SPEC_BY_KIND", "Config", "Origin", "Resource", "SpecError", "env_reference", "load_config"]
