"""First apply at scale: 1k and 10k models on the FakeProvider, and what state writing costs.

For each size the same generated configuration (see plan_scale.py) is planned and applied twice
from scratch, side by side:

- ``durable``: the real backend (the file backend's journal with group commit, or PostgreSQL with
  ``--postgres-env NAME``), every finished action recorded before it counts as done;
- ``no state``: a backend that keeps the document in memory and writes nothing.

State-writing share = (durable - no state) / durable, the part of the apply's time that exists only
because state is written. Also printed: the time spent inside the backend's calls (which overlap
the walk, since the syncs run in a thread) and how many syncs (batches) recorded the actions.

    .venv/bin/python bench/apply_scale.py                    # 1000,10000 on the file backend
    .venv/bin/python bench/apply_scale.py --sizes 50,100     # smoke
    CMLPLAN_BENCH_DSN=postgresql://... .venv/bin/python bench/apply_scale.py --postgres-env CMLPLAN_BENCH_DSN

Numbers are printed side by side from one run; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for entry in (str(REPO), str(REPO / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from plan_scale import generate  # noqa: E402

from cmlplan.engine.collection import collector_paused  # noqa: E402
from cmlplan.engine.events import SilentEvents  # noqa: E402
from cmlplan.engine.planner import PlanOptions  # noqa: E402
from cmlplan.engine.workspace import Workspace  # noqa: E402
from cmlplan.plan import Action  # noqa: E402
from cmlplan.providers.fake import FakeProvider  # noqa: E402
from cmlplan.providers.registry import register_provider  # noqa: E402
from cmlplan.state.document import StateDelta, StateDocument  # noqa: E402

TARGET_SHARE = 0.10
TARGET_RATIO = 12.0


class Timed:
    """Wraps a backend, adding up the seconds spent in its writing calls and counting batches."""

    def __init__(self, backend) -> None:  # type: ignore[no-untyped-def]
        self.backend = backend
        self.seconds = 0.0
        self.batches = 0
        self.deltas = 0

    def append(self, deltas: Sequence[StateDelta]) -> None:
        began = time.perf_counter()
        try:
            self.backend.append(deltas)
        finally:
            self.seconds += time.perf_counter() - began
        self.batches += 1
        self.deltas += len(deltas)

    def checkpoint(self, doc: StateDocument) -> None:
        began = time.perf_counter()
        try:
            self.backend.checkpoint(doc)
        finally:
            self.seconds += time.perf_counter() - began

    def write(self, doc: StateDocument) -> StateDocument:
        began = time.perf_counter()
        try:
            return self.backend.write(doc)
        finally:
            self.seconds += time.perf_counter() - began

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.backend, name)


class NoState:
    """A backend that writes nothing: the baseline an apply would take if state were free."""

    def __init__(self, backend) -> None:  # type: ignore[no-untyped-def]
        self.backend = backend
        self.exists = False

    def append_ready(self) -> bool:
        return self.exists

    def append(self, deltas: Sequence[StateDelta]) -> None:
        return None

    def checkpoint(self, doc: StateDocument) -> None:
        self.exists = True

    def write(self, doc: StateDocument) -> StateDocument:
        self.exists = True
        return doc.model_copy(update={"serial": doc.serial + 1})

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.backend, name)


async def first_apply(folder: Path, durable: bool, environ: dict[str, str]) -> tuple[float, float, int, int, int]:
    """(seconds plan+apply, seconds inside backend writes, batches, recorded actions, changes)."""
    ws = Workspace.open(folder, environ=environ)
    timed = Timed(ws.backend if durable else NoState(ws.backend))
    ws.backend = timed  # type: ignore[assignment]
    with ws.locked("apply"):
        started = time.perf_counter()
        with collector_paused():
            async with ws.session(ws.read_state()) as session:
                run = await session.plan(PlanOptions())
                changes = sum(1 for c in run.plan.changes if c.action is not Action.NOOP)
                report = await session.apply(run, SilentEvents(), parallelism=10)
        seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"apply failed: {dict(list(report.failed.items())[:3])} {report.state_error}")
    return seconds, timed.seconds, timed.batches, timed.deltas, changes


def _folder(root: Path, size: int, label: str, template: Path) -> Path:
    folder = root / f"n{size}-{label}"
    shutil.copytree(template, folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated model counts (first and last are compared)")
    parser.add_argument("--postgres-env", metavar="NAME", help="environment variable with a DSN: bench the PostgreSQL backend")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    environ = dict(os.environ)
    if args.postgres_env and not environ.get(args.postgres_env):
        raise SystemExit(f"environment variable {args.postgres_env} is not set")

    fake = FakeProvider()
    register_provider("local", lambda _context: fake)
    root = Path(tempfile.mkdtemp(prefix="cmlplan-bench-apply-"))
    backend_name = "postgres" if args.postgres_env else "file (journal, group commit)"
    print(f"backend: {backend_name}; first apply, plan + apply, parallelism 10, FakeProvider")
    print(f"{'models':>7} {'changes':>8} {'durable s':>10} {'no state s':>11} {'state share':>12} {'in writes s':>12} {'syncs':>7} {'actions/sync':>13}")
    totals: dict[int, float] = {}
    shares: dict[int, float] = {}
    try:
        for size in sizes:
            template = root / f"n{size}-template"
            template.mkdir()
            generate(template, size)
            if args.postgres_env:
                spec = template / "cmlplan.yaml"
                state = f'  state: {{backend: postgres, dsn: "${{env:{args.postgres_env}}}", workspace: b{uuid.uuid4().hex[:8]}}}\n'
                spec.write_text(spec.read_text().replace("  provider: local\n", "  provider: local\n" + state, 1))
            results = {}
            for label, durable in (("nostate", False), ("durable", True)):
                fake.world.clear()
                folder = _folder(root, size, label, template)
                results[label] = asyncio.run(first_apply(folder, durable, environ))
            seconds, in_writes, batches, deltas, changes = results["durable"]
            baseline = results["nostate"][0]
            share = max(0.0, (seconds - baseline) / seconds)
            totals[size], shares[size] = seconds, share
            per_sync = deltas / batches if batches else 0.0
            print(f"{size:>7} {changes:>8} {seconds:>10.2f} {baseline:>11.2f} {share:>11.1%} {in_writes:>12.2f} {batches:>7} {per_sync:>13.1f}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for size in sizes:
        verdict = "ok" if shares[size] <= TARGET_SHARE else "over"
        print(f"target: state-writing share at {size} models <= {TARGET_SHARE:.0%}: {shares[size]:.1%} ({verdict})")
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        ratio = totals[large] / totals[small]
        verdict = "ok" if ratio <= TARGET_RATIO * large / small / 10 else "over"
        print(f"ratio {large}/{small} models (first apply, durable): {ratio:.1f} (target <= {TARGET_RATIO * large / small / 10:g}: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
