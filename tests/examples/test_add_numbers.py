"""examples/add-numbers: the CML add(args) model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "add-numbers"


@pytest.fixture(scope="module")
def add_module():
    spec = importlib.util.spec_from_file_location("add_numbers_under_test", EXAMPLE / "add.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("a", "b", "expected"), [(3, 5, 8), (-1, 1, 0), (1.5, 2.25, 3.75)])
def test_add(add_module, a, b, expected):
    assert add_module.add({"a": a, "b": b}) == {"result": expected}


@pytest.mark.parametrize(
    "args",
    [{}, {"a": 3}, {"b": 5}, {"a": "3", "b": 5}, {"a": 3, "b": None}, {"a": True, "b": 5}, [3, 5]],
)
def test_add_rejects_invalid_input(add_module, args):
    with pytest.raises(ValueError, match='"a"|"b"|JSON object'):
        add_module.add(args)


def test_requirements_empty():
    assert (EXAMPLE / "requirements.txt").read_text().strip() == ""
