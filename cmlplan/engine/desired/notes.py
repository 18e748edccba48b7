"""What a new build changes against the previous one, in words a reviewer reads."""

from __future__ import annotations

from typing import Any


def build_notes(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What a new build changes against the previous one, in words a reviewer reads."""
    if previous is None:
        files = current.get("manifest", {})
        return [f"first build: {len(files)} file{'s' if len(files) != 1 else ''}"]
    notes: list[str] = []
    before, after = previous.get("manifest", {}), current.get("manifest", {})
    parts = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            parts.append(f"+{path} ({_lines(new)})")
        elif new is None:
            parts.append(f"-{path}")
        elif old.get("sha256") != new.get("sha256"):
            if old.get("lines") is not None and new.get("lines") is not None:
                parts.append(f"~{path} ({old['lines']} -> {new['lines']} lines)")
            else:
                parts.append(f"~{path} ({old.get('size')} -> {new.get('size')} bytes)")
    if parts:
        notes.append("files: " + ", ".join(parts))
    old_req, new_req = previous.get("requirements", {}), current.get("requirements", {})
    req_parts = []
    for name in sorted(set(old_req) | set(new_req)):
        if name not in old_req:
            req_parts.append(f"+{name}{new_req[name]}")
        elif name not in new_req:
            req_parts.append(f"-{name}{old_req[name]}")
        elif old_req[name] != new_req[name]:
            req_parts.append(f"{name} {old_req[name].lstrip('=') or '*'} -> {new_req[name].lstrip('=') or '*'}")
    if req_parts:
        notes.append("requirements: " + ", ".join(req_parts))
    for key, label in (("function", "function"), ("file", "file"), ("python", "python"), ("build_script", "build script")):
        if previous.get(key) != current.get(key):
            notes.append(f"{label}: {previous.get(key)} -> {current.get(key)}")
    return notes


def _lines(entry: dict[str, Any]) -> str:
    return f"{entry['lines']} lines" if entry.get("lines") is not None else f"{entry.get('size')} bytes"
