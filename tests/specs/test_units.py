"""Durations and sizes: parsed to seconds and bytes, formatted back to the shortest exact form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmlplan.specs.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("1.5h", 5400.0), ("90d", 7776000.0), ("250ms", 0.25), (" 7 s ", 7.0), ("12", 12.0), (3, 3.0), (2.5, 2.5)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["forever", "", "1w", "-5s", "s", "1 2s", True, -1])
def test_bad_duration(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("5MB", 5_000_000), ("512Mi", 512 * 1024**2), ("2Gi", 2 * 1024**3), ("1K", 1000), ("3Ki", 3072), ("10B", 10), ("1.5GB", 1_500_000_000), (42, 42), ("7", 7)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["5 parsecs", "", "mb", "-1MB", "1Pi", False, -3])
def test_bad_size(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (120, "2m"), (3600, "1h"), (86400 * 90, "90d"), (90, "90s"), (0.25, "0.25s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(2 * 1024**3, "2Gi"), (512 * 1024**2, "512Mi"), (5_000_000, "5MB"), (1000, "1KB"), (1500, "1500B"), (0, "0B")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size
