"""Regenerate the golden plan cases' inputs: specs/, state.json and live.json.

    .venv/bin/python tests/golden/generate.py     # then: CMLPLAN_UPDATE_GOLDEN=1 pytest tests/golden

Each case starts from examples/add-numbers. A case with a ``before`` mutation is applied with the
FakeProvider in that form first; the state that apply wrote becomes the case's state.json and (when
``live`` edits it) the FakeProvider's world becomes live.json. Then ``after`` mutates the specs the
plan is made from. The outputs are committed; this script only documents and repeats how.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BASE = REPO / "examples" / "add-numbers"
SPEC = "cmlplan.yaml"
APIKEY = "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: ci}\nspec: {user: alice, expires_in: 90d}\n"

Mutation = Callable[[Path], None]


def _same(_folder: Path) -> None:
    return None


def _edit_source(folder: Path) -> None:
    path = folder / "add.py"
    path.write_text(path.read_text().replace('"""{"a": 3, "b": 5} -> {"result": 8}."""', '"""Sum of a and b: {"a": 3, "b": 5} -> {"result": 8}."""\n    # validated below'))


def _remove_model(folder: Path) -> None:
    path = folder / SPEC
    text = path.read_text()
    path.write_text(text[: text.index("---\napiVersion: cmlplan/v1\nkind: Model")])


def _add_apikey(folder: Path) -> None:
    path = folder / SPEC
    path.write_text(path.read_text() + APIKEY)


def _move_proxy(folder: Path) -> None:
    path = folder / SPEC
    path.write_text(path.read_text().replace("port: 8788", "port: 8790"))


def _scale_replicas(folder: Path) -> None:
    path = folder / SPEC
    path.write_text(path.read_text().replace("replicas: 2", "replicas: 5"))


def _drift_replicas(world: dict) -> None:
    world["deployment.numbers/add"]["replicas"] = 5


@dataclass
class Case:
    name: str
    applied: bool = True  # apply the base specs first (state.json)
    after: Mutation = _same
    live: Callable[[dict], None] | None = None


# Not generated here: legacy_key_labels keeps a state written before fingerprint keys (it records
# the unsalted access_key_fingerprint older cmlplan stored), to show the state-upgrade line.
CASES = [
    Case("create_all", applied=False),
    Case("noop"),
    Case("source_changed", after=_edit_source),
    Case("drift_replicas", live=_drift_replicas),
    Case("model_removed", after=_remove_model),
    Case("apikey_added", after=_add_apikey),
    Case("proxy_replaced", after=_move_proxy),
    Case("replicas_scaled", after=_scale_replicas),
]


def _copy_base(target: Path) -> None:
    shutil.copytree(BASE, target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__", "README.md"))


async def _apply(folder: Path):  # type: ignore[no-untyped-def]
    from cmlplan.engine.events import SilentEvents
    from cmlplan.engine.planner import PlanOptions
    from cmlplan.engine.workspace import Workspace

    workspace = Workspace.open(folder, environ={})
    async with workspace.session(workspace.read_state()) as session:
        report = await session.apply(await session.plan(PlanOptions()), SilentEvents())
    assert report.ok, report


def generate(case: Case) -> None:
    from cmlplan.providers import registry
    from cmlplan.providers.fake import FakeProvider

    folder = HERE / "plan" / case.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("specs", "state.json", "live.json"):
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "specs"
        _copy_base(work)
        if case.applied:
            fake = FakeProvider()
            registry.register_provider("local", lambda _context: fake)
            try:
                asyncio.run(_apply(work))
            finally:
                registry._FACTORIES.pop("local", None)
            shutil.copy(work / ".cmlplan" / "state.json", folder / "state.json")
            if case.live is not None:
                world = json.loads(json.dumps(fake.world))
                case.live(world)
                (folder / "live.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(work / ".cmlplan")
        case.after(work)
        shutil.copytree(work, folder / "specs")


def main(names: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    for case in CASES:
        if not names or case.name in names:
            generate(case)
            print(f"generated {case.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
