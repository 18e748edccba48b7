"""Spec errors: every problem is one line that starts with file:line:column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import CmlplanError


class SpecError(CmlplanError):
    """One or more problems in the specs, each a line of its own."""

    def __init__(self, problems: list[str]) -> None:
        # a problem is one line even when it quotes a hostile key or value
        self.problems = [p.replace("\r", "\\r").replace("\n", "\\n") for p in problems]
        super().__init__("\n".join(self.problems))


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling, for "did you mean" hints."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = nearest(word, choices)
    return f"; did you mean {match!r}?" if match else ""
