"""Fixtures of the fault tests; the helpers live in faultkit.py (a name no other conftest shadows)."""

from faultkit import numbers, numbers_auth  # noqa: F401 - fixtures
