"""Golden plans: each case under plan/ is planned with the FakeProvider and compared, in text,
Markdown and JSON, with its expected files. CMLPLAN_UPDATE_GOLDEN=1 rewrites the expectations;
tests/golden/generate.py regenerates a case's inputs (specs/, state.json, live.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cmlplan.engine.planner import PlanOptions
from cmlplan.engine.workspace import Workspace
from cmlplan.plan import plan_to_dict, render_markdown, render_text
from cmlplan.providers.fake import FakeProvider
from cmlplan.state.document import StateDocument

CASES_DIR = Path(__file__).parent / "plan"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "specs").is_dir())
UPDATE = os.environ.get("CMLPLAN_UPDATE_GOLDEN") == "1"
_HEX = re.compile(r"\b[0-9a-f]{64}\b")
_LINEAGE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _normalise(text: str, folder: Path) -> str:
    text = text.replace(str(folder), "<specs>")
    text = _HEX.sub("<sha256>", text)
    return _LINEAGE.sub("<lineage>", text)


def _plan_json(data: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    data["created_at"] = "<created_at>"
    data["cmlplan_version"] = "<version>"
    data["specs_hash"] = "<specs_hash>"
    data["state"] = {
        "lineage": None if data["state"]["lineage"] is None else "<lineage>",
        "serial": None if data["state"]["serial"] is None else "<serial>",
    }
    return data


def _make(case: str, tmp_path: Path, fake: FakeProvider) -> tuple[dict[str, str], Path]:
    source = CASES_DIR / case
    folder = tmp_path / "specs"
    shutil.copytree(source / "specs", folder)
    state_file = source / "state.json"
    if state_file.exists():
        (folder / ".cmlplan").mkdir()
        shutil.copy(state_file, folder / ".cmlplan" / "state.json")
        state = StateDocument.from_json(state_file.read_bytes(), str(state_file))
        # without live.json the live world is what the state recorded
        fake.world = {a: dict(r.attributes) for a, r in state.resources.items() if r.provider != "cmlplan"}
    live_file = source / "live.json"
    if live_file.exists():
        fake.world = {a: v for a, v in json.loads(live_file.read_text()).items() if v is not None}

    async def plan():  # type: ignore[no-untyped-def]
        workspace = Workspace.open(folder, environ={})
        async with workspace.session(workspace.read_state()) as session:
            run = await session.plan(PlanOptions())
        return run.plan

    result = asyncio.run(plan())
    outputs = {
        "plan.txt": render_text(result),
        "plan.md": render_markdown(result),
        "plan.json": json.dumps(_plan_json(plan_to_dict(result)), indent=2) + "\n",
    }
    return {name: _normalise(text, folder) for name, text in outputs.items()}, source


@pytest.mark.parametrize("case", CASES)
def test_plan_golden(case: str, tmp_path: Path, fake: FakeProvider) -> None:
    outputs, source = _make(case, tmp_path, fake)
    for name, text in outputs.items():
        expected = source / name
        if UPDATE:
            expected.write_text(text)
            continue
        assert expected.exists(), f"{expected} is missing; run with CMLPLAN_UPDATE_GOLDEN=1 to write it"
        assert text == expected.read_text(), f"{case}/{name} differs; CMLPLAN_UPDATE_GOLDEN=1 rewrites it"


def test_every_required_case_exists() -> None:
    # one case per action kind: create, no-op, create-then-delete, update (drift and spec), delete, replace
    assert {
        "create_all", "noop", "source_changed", "drift_replicas", "model_removed", "apikey_added", "proxy_replaced",
        "replicas_scaled",
    } <= set(CASES)
