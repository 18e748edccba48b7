"""`cmlplan gc`: asks providers that can collect garbage, skips the others, reports in text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from test_commands import cmlplan

from cmlplan.providers import registry
from cmlplan.providers.base import ProviderContext
from cmlplan.providers.fake import FakeProvider


class CollectingFake(FakeProvider):
    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self.asked: list[set[str]] = []

    async def collect_garbage(self, keep: set[str]) -> list[str]:
        self.asked.append(set(keep))
        return ["image old:1 (build.numbers/add#1)"]


def test_gc_skips_providers_without_the_ability(add_numbers: Path, fake: FakeProvider) -> None:
    result = cmlplan("gc", "-C", str(add_numbers))
    assert (result.code, result.out) == (0, "gc: nothing to remove.\n")
    assert json.loads(cmlplan("gc", "-C", str(add_numbers), "--json").out) == {"removed": {}, "count": 0}


def test_gc_passes_the_recorded_builds_and_prints_what_went(add_numbers: Path, fake: FakeProvider) -> None:
    collecting = CollectingFake(fake.context)
    registry.register_provider("local", lambda _context: collecting)
    assert cmlplan("apply", "-C", str(add_numbers), "-auto-approve").code == 0
    result = cmlplan("gc", "-C", str(add_numbers))
    assert result.code == 0, result
    assert "local: removed image old:1 (build.numbers/add#1)" in result.out
    assert collecting.asked == [{"build.numbers/add#1"}]
    data = json.loads(cmlplan("gc", "-C", str(add_numbers), "--json").out)
    assert data == {"removed": {"local": ["image old:1 (build.numbers/add#1)"]}, "count": 1}
