"""`cmlplan gc` on the local provider: build folders the state no longer records, then unused venvs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cmlplan.providers.base import ProviderContext
from cmlplan.providers.local.provider import LocalProvider


def _build(root: Path, key: str, number: int, venv: str) -> Path:
    folder = root / "builds" / key / str(number)
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "model.py").write_text("x = 1\n")
    (folder / "src" / "model.py").chmod(0o444)
    (folder / "build.json").write_text(json.dumps({"venv_key": venv, "build_hash": "h"}))
    return folder


def test_gc_removes_unrecorded_builds_and_their_venvs(tmp_path: Path) -> None:
    root = tmp_path / ".cmlplan"
    old = _build(root, "iris/petal-width", 1, "aaaa")
    kept = _build(root, "iris/petal-width", 2, "bbbb")
    other = _build(root, "numbers/add", 1, "aaaa")
    for venv in ("aaaa", "bbbb", "cccc"):
        (root / "venvs" / venv).mkdir(parents=True)
    context = ProviderContext(workspace_id="w", spec_dir=str(tmp_path), data_dir=str(root), salt="00")
    removed = asyncio.run(LocalProvider(context).collect_garbage({"build.iris/petal-width#2"}))
    assert not old.exists() and not other.exists() and kept.exists()
    assert sorted(p.name for p in (root / "venvs").iterdir() if p.is_dir()) == ["bbbb"]
    assert len(removed) == 4, removed  # two build folders, two venvs
    assert asyncio.run(LocalProvider(context).collect_garbage({"build.iris/petal-width#2"})) == []
