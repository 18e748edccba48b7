"""No-op plan time at scale: 1k / 5k / 10k models on the FakeProvider.

For each size this generates a configuration (one Workspace, one Proxy, a few Projects, N Models
that all share ONE small source folder so its manifest is computed once), applies it once with the
FakeProvider registered as ``local`` (so state exists), then times a no-op plan the way
``cmlplan plan`` does it: Workspace.open (load specs) + read_state + plan. Median of --repeat runs.

    .venv/bin/python bench/plan_scale.py                 # 1000,5000,10000
    .venv/bin/python bench/plan_scale.py --sizes 20,40   # smoke
    .venv/bin/python bench/plan_scale.py --sizes 1000 --profile

Apply saves the whole state after every action, so a first apply is quadratic in the number of
resources. It runs with a time budget (--apply-budget seconds per size): once the budget runs out,
the remaining actions' state writes are deferred to one final write (a bench-only backend wrapper),
and the apply column reads ">budget (actions saved within budget / actions planned)". Apply time is
secondary; the no-op plan is the target.

Numbers are printed side by side from one run; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cmlplan.engine.events import SilentEvents  # noqa: E402
from cmlplan.engine.planner import PlanOptions  # noqa: E402
from cmlplan.engine.workspace import Workspace  # noqa: E402
from cmlplan.plan import Action  # noqa: E402
from cmlplan.providers.fake import FakeProvider  # noqa: E402
from cmlplan.providers.registry import register_provider  # noqa: E402

TARGET_1K_SECONDS = 1.0
TARGET_RATIO = 12.0
PROJECTS = 5
MODELS_PER_FILE = 500

PREDICT_PY = '''"""A tiny model shared by every benchmark model."""


def predict(args):
    return {"result": args.get("a", 0) + args.get("b", 0)}
'''


def generate(folder: Path, models: int) -> None:
    """Write the specs for ``models`` models into ``folder`` (plus the shared src/ folder)."""
    src = folder / "src"
    src.mkdir(parents=True)
    (src / "predict.py").write_text(PREDICT_PY)
    (src / "requirements.txt").write_text("")
    head = [
        "apiVersion: cmlplan/v1\nkind: Workspace\nmetadata: {name: bench}\n"
        "spec:\n  provider: local\n  users: [{name: alice}, {name: bob}]\n  limits: {max_replicas: 9}\n",
        "apiVersion: cmlplan/v1\nkind: Proxy\nmetadata: {name: default}\n"
        "spec: {host: 127.0.0.1, port: 18787, busy_timeout: 30s, request_timeout: 30s, max_request_size: 5MB}\n",
        "apiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: alice-ci}\nspec: {user: alice, expires_in: 90d}\n",
    ]
    for p in range(PROJECTS):
        head.append(
            f"apiVersion: cmlplan/v1\nkind: Project\nmetadata: {{name: proj-{p}}}\n"
            f"spec:\n  description: bench project {p}\n  collaborators: {{alice: owner, bob: viewer}}\n"
        )
    (folder / "cmlplan.yaml").write_text("---\n".join(head))
    for start in range(0, models, MODELS_PER_FILE):
        docs = []
        for i in range(start, min(models, start + MODELS_PER_FILE)):
            docs.append(
                f"apiVersion: cmlplan/v1\nkind: Model\nmetadata: {{name: m-{i:05d}, project: proj-{i % PROJECTS}}}\n"
                "spec:\n"
                f"  description: bench model {i}\n"
                "  source: {path: src, file: predict.py, function: predict}\n"
                '  runtime: {python: "3.11", requirements: requirements.txt}\n'
                f"  authentication: {'true' if i % 2 else 'false'}\n"
                "  examples:\n    - input: {a: 3, b: 5}\n      output: {result: 8}\n"
                "  deployment: {replicas: 2, cpu: 1, memory: 512Mi, env: {}}\n"
            )
        (folder / f"models-{start // MODELS_PER_FILE:03d}.yaml").write_text("---\n".join(docs))


class BudgetBackend:
    """Wraps a FileBackend: real writes until ``budget`` seconds have passed, then writes are kept
    in memory until flush() (a bench-only shortcut so a quadratic apply still ends)."""

    def __init__(self, backend, budget: float) -> None:
        self.backend = backend
        self.deadline = time.perf_counter() + budget
        self.real_writes = 0
        self.deferred = 0
        self.latest = None

    def write(self, doc):
        if self.deferred == 0 and time.perf_counter() < self.deadline:
            self.real_writes += 1
            return self.backend.write(doc)
        self.deferred += 1
        self.latest = doc
        return doc.model_copy(update={"serial": doc.serial + 1})

    def flush(self) -> None:
        if self.latest is not None:
            self.backend.write(self.latest)

    def __getattr__(self, name):
        return getattr(self.backend, name)


async def apply_size(folder: Path, budget: float) -> str:
    """Plan + apply once. The walk never yields while the fake provider and the saves run, so
    a timer cannot stop it; the backend wrapper switches to deferred writes at the budget instead."""
    ws = Workspace.open(folder)
    backend = BudgetBackend(ws.backend, budget)
    ws.backend = backend  # type: ignore[assignment]
    with ws.locked("apply"):
        started = time.perf_counter()
        async with ws.session(ws.read_state()) as session:
            run = await session.plan(PlanOptions())
            planned = sum(1 for c in run.plan.changes if c.action is not Action.NOOP)
            report = await session.apply(run, SilentEvents())
        backend.flush()
        seconds = time.perf_counter() - started
    if report.failed or report.skipped or report.not_started:
        raise SystemExit(
            f"apply failed: {dict(list(report.failed.items())[:3])} {dict(list(report.skipped.items())[:3])}"
        )
    if backend.deferred == 0:
        return f"{seconds:.2f}"
    return f">{budget:g} ({backend.real_writes}/{planned})"


async def plan_once(folder: Path) -> tuple[float, float, float, int, int]:
    """(open s, read_state s, plan s, resources, non-noop changes)."""
    t0 = time.perf_counter()
    ws = Workspace.open(folder)
    t1 = time.perf_counter()
    state = ws.read_state()
    t2 = time.perf_counter()
    async with ws.session(state) as session:
        run = await session.plan(PlanOptions())
    t3 = time.perf_counter()
    changes = sum(1 for c in run.plan.changes if c.action is not Action.NOOP)
    return t1 - t0, t2 - t1, t3 - t2, len(run.plan.changes), changes


def profile_plan(folder: Path, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(plan_once(folder))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    out.write("\n--- by own time (tottime) ---\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,10000", help="comma-separated model counts")
    parser.add_argument("--repeat", type=int, default=3, help="no-op plans per size (median is reported)")
    parser.add_argument(
        "--apply-budget", type=float, default=30.0, help="seconds of real (save-per-action) apply per size"
    )
    parser.add_argument("--profile", action="store_true", help="profile the no-op plan of the largest size")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    repeat = max(1, min(args.repeat, 20))

    fake = FakeProvider()
    register_provider("local", lambda ctx: fake)

    root = Path(tempfile.mkdtemp(prefix="cmlplan-bench-plan-"))
    rows = []
    totals: dict[int, float] = {}
    plans: dict[int, float] = {}
    try:
        for size in sizes:
            fake.world.clear()
            folder = root / f"n{size}"
            folder.mkdir()
            generate(folder, size)
            apply_text = asyncio.run(apply_size(folder, args.apply_budget))
            samples = [asyncio.run(plan_once(folder)) for _ in range(repeat)]
            opens = statistics.median(s[0] for s in samples)
            reads = statistics.median(s[1] for s in samples)
            plan_s = statistics.median(s[2] for s in samples)
            total = statistics.median(s[0] + s[1] + s[2] for s in samples)
            resources, changes = samples[-1][3], samples[-1][4]
            totals[size], plans[size] = total, plan_s
            rows.append(
                (size, resources, changes, apply_text, opens, reads, plan_s, total, total / size * 1000)
            )
            print(f"  [{size} models: apply s {apply_text}, no-op plan {total:.3f} s]", flush=True)
        print()
        print(
            f"No-op plan (median of {repeat}; total = Workspace.open + read_state + ws.plan, as `cmlplan plan`)"
        )
        print(
            f"{'models':>7} {'resources':>9} {'changes':>7} {'apply s':>18} {'open s':>8} {'state s':>8}"
            f" {'plan s':>8} {'total s':>8} {'ms/model':>9}"
        )
        for models, resources, changes, applied, opens, reads, plan_s, total, per in rows:
            print(
                f"{models:>7d} {resources:>9d} {changes:>7d} {applied:>18} {opens:>8.3f} {reads:>8.3f}"
                f" {plan_s:>8.3f} {total:>8.3f} {per:>9.3f}"
            )
        if any(r[2] for r in rows):
            print("WARNING: a plan after apply is not a no-op (changes > 0)")
        small, large = sizes[0], sizes[-1]
        print()
        if small in totals:
            met = "met" if totals[small] < TARGET_1K_SECONDS else "not met"
            print(f"target: {small} models no-op plan {totals[small]:.3f} s < {TARGET_1K_SECONDS:g} s: {met}")
        ratio = totals[large] / totals[small] if totals[small] else float("inf")
        met = "met" if ratio <= TARGET_RATIO else "not met"
        print(
            f"ratio {large}/{small} models (total): {ratio:.2f} (target <= {TARGET_RATIO:g}, linear = {large / small:g}): {met}"
        )
        plan_ratio = plans[large] / plans[small] if plans[small] else float("inf")
        print(f"ratio {large}/{small} models (ws.plan only): {plan_ratio:.2f}")
        if args.profile:
            print()
            print(f"cProfile of one no-op plan at {large} models, top 25:")
            print(profile_plan(root / f"n{large}", 25))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
