"""Attribute-level differences between two attribute dicts, as immutable values.

Equality is checked first (cheap, and nearly every resource of a no-op plan is equal); deepdiff
runs only where something differs, to name each nested path that changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff

Path = tuple[str | int, ...]

_ABSENT = object()


@dataclass(frozen=True)
class AttributeChange:
    path: Path
    before: Any  # _ABSENT when added
    after: Any  # _ABSENT when removed

    @property
    def dotted(self) -> str:
        return dotted(self.path)

    @property
    def added(self) -> bool:
        return self.before is _ABSENT

    @property
    def removed(self) -> bool:
        return self.after is _ABSENT


def dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def attribute_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[AttributeChange]:
    """Each leaf that differs, sorted by path; empty when the two are equal."""
    before = before or {}
    after = after or {}
    if before == after:
        return []
    found: list[AttributeChange] = []
    tree = DeepDiff(before, after, view="tree", verbose_level=2)
    for report, levels in tree.items():
        for level in levels:
            path = tuple(level.path(output_format="list"))
            if report in ("dictionary_item_added", "iterable_item_added", "attribute_added"):
                found.append(AttributeChange(path, _ABSENT, level.t2))
            elif report in ("dictionary_item_removed", "iterable_item_removed", "attribute_removed"):
                found.append(AttributeChange(path, level.t1, _ABSENT))
            else:
                found.append(AttributeChange(path, level.t1, level.t2))
    found.sort(key=lambda c: [str(p) for p in c.path])
    return found


def matches(path: Path, prefixes: Iterable[str]) -> bool:
    """Whether ``path`` is at or under one of the dotted ``prefixes``."""
    text = dotted(path)
    return any(text == p or text.startswith(p + ".") or text.startswith(p + "[") for p in prefixes)


def without_paths(attributes: dict[str, Any] | None, prefixes: Iterable[str]) -> dict[str, Any] | None:
    """A copy with the dotted ``prefixes`` removed (for ignore_changes)."""
    if attributes is None:
        return None
    prefixes = list(prefixes)
    if not prefixes:
        return attributes
    result = deep_copy(attributes)
    for prefix in prefixes:
        parts = prefix.split(".")
        node: Any = result
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return result


def deep_copy(value: Any) -> Any:
    """A copy of JSON-shaped attributes (dicts and lists copied, leaves shared): cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
