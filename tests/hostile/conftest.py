"""Reuse the serving fixtures (real replica and proxy processes) from tests/serving/conftest.py."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "serving_helpers", Path(__file__).resolve().parents[1] / "serving" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
serving_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving_helpers)

serving = serving_helpers.serving
