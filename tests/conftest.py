"""Shared fixtures: the FakeProvider registered as the workspace's provider, and example workspaces."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmlplan.providers import registry
from cmlplan.providers.fake import FakeProvider

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    """One FakeProvider answering for provider ``local`` (the examples' provider) during the test."""
    provider = FakeProvider()
    previous = registry._FACTORIES.get("local")
    registry.register_provider("local", lambda _context: provider)
    try:
        yield provider
    finally:
        if previous is None:
            registry._FACTORIES.pop("local", None)
        else:
            registry._FACTORIES["local"] = previous


@pytest.fixture
def add_numbers(tmp_path: Path) -> Path:
    """A private copy of examples/add-numbers (without any .cmlplan folder)."""
    target = tmp_path / "add-numbers"
    shutil.copytree(EXAMPLES / "add-numbers", target, ignore=shutil.ignore_patterns(".cmlplan", "__pycache__"))
    return target


class Engine:
    """Plan and apply a spec folder through the Workspace, the way the CLI does (without the lock)."""

    def __init__(self, directory: Path, environ: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.environ = environ if environ is not None else {}

    def workspace(self):  # type: ignore[no-untyped-def]
        from cmlplan.engine.workspace import Workspace

        return Workspace.open(self.directory, environ=self.environ)

    def plan(self, **options: object):  # type: ignore[no-untyped-def]
        """The PlannedRun for these PlanOptions (providers closed)."""
        import asyncio

        from cmlplan.engine.planner import PlanOptions

        async def go():  # type: ignore[no-untyped-def]
            workspace = self.workspace()
            async with workspace.session(workspace.read_state()) as session:
                return await session.plan(PlanOptions(**options))  # type: ignore[arg-type]

        return asyncio.run(go())

    def apply(self, stop_after_plan: bool = False, parallelism: int = 10, events=None, **options: object):  # type: ignore[no-untyped-def]
        """Plan, then apply; returns (run, report)."""
        import asyncio

        from cmlplan.engine.events import SilentEvents
        from cmlplan.engine.planner import PlanOptions

        async def go():  # type: ignore[no-untyped-def]
            workspace = self.workspace()
            async with workspace.session(workspace.read_state()) as session:
                run = await session.plan(PlanOptions(**options))  # type: ignore[arg-type]
                stop = asyncio.Event()
                if stop_after_plan:
                    stop.set()
                report = await session.apply(run, events or SilentEvents(), parallelism, stop)
            return run, report

        return asyncio.run(go())


@pytest.fixture
def engine(add_numbers: Path, fake: FakeProvider) -> Engine:
    return Engine(add_numbers)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A private PostgreSQL server for the session (one per xdist worker); skipped when not installed."""
    from pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
    server = PgServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server) -> str:  # type: ignore[no-untyped-def]
    """The DSN of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test id is unique, so ``-k`` and ``pytest <id>`` pick exactly one test.

    schemathesis gives each API operation's case the same node id; the operation is added to it.
    """
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and not item.nodeid.endswith("]"):
            if hasattr(item, "_id"):  # pytest >= 9 keeps the id as a NodeId
                item._id = item._id.with_params(label)
            else:
                item._nodeid = f"{item.nodeid}[{label}]"
    seen: set[str] = set()
    duplicates = sorted({item.nodeid for item in items if item.nodeid in seen or seen.add(item.nodeid)})
    if duplicates:
        raise pytest.UsageError(f"test ids are not unique: {', '.join(duplicates[:5])}")
