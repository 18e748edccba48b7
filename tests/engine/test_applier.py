"""apply_run through Workspace.apply with the FakeProvider: order, state, failures, keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cmlplan.engine.events import SilentEvents
from cmlplan.plan import ActionReason
from cmlplan.providers.fake import FakeProvider
from cmlplan.state.file import FileBackend

MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
BUILD1 = "build.numbers/add#1"
ALL = ["project.numbers", MODEL, BUILD1, DEPLOYMENT, "proxy.default"]


class Recorder(SilentEvents):
    def __init__(self) -> None:
        self.order: list[tuple[str, str]] = []
        self.secrets: dict[str, str] = {}

    def finished(self, address: str, action: str, seconds: float) -> None:
        self.order.append((address, action))

    def key_created(self, address: str, path: str, secret: str) -> None:
        self.secrets[address] = secret


def state_of(folder: Path):  # type: ignore[no-untyped-def]
    return FileBackend(folder / ".cmlplan" / "state.json").read()


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "cmlplan.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_first_apply_creates_in_dependency_order(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    events = Recorder()
    _, report = engine.apply(parallelism=1, events=events)
    assert report.ok and report.done == dict.fromkeys(ALL, "create")
    order = [address for address, _ in events.order]
    assert sorted(order) == sorted(ALL)
    for before, after in [("project.numbers", MODEL), (MODEL, BUILD1), (BUILD1, DEPLOYMENT), (MODEL, DEPLOYMENT), (DEPLOYMENT, "proxy.default"), ("project.numbers", "proxy.default")]:
        assert order.index(before) < order.index(after), (before, after)
    assert set(fake.world) == {BUILD1, DEPLOYMENT, "proxy.default"}
    state = state_of(engine.directory)
    assert set(state.resources) == set(ALL)
    assert [b.number for b in state.builds[MODEL]] == [1]
    assert state.resources[DEPLOYMENT].attributes["access_key_hash"] == state.resources[MODEL].attributes["access_key_hash"]
    assert state.resources[DEPLOYMENT].dependencies == [MODEL, BUILD1]


def test_second_apply_changes_nothing(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    before = state_of(engine.directory)
    calls = len(fake.calls)
    run, report = engine.apply()
    assert not run.plan.has_changes and report.ok and report.done == {}
    assert len(fake.calls) == calls
    after = state_of(engine.directory)
    assert after.lineage == before.lineage
    assert {a: r.attributes for a, r in after.resources.items()} == {a: r.attributes for a, r in before.resources.items()}


def test_state_serial_increments_per_finished_action(engine) -> None:  # type: ignore[no-untyped-def]
    _, report = engine.apply()
    # one write per finished action, plus one for the new deployment's id (recorded before it starts)
    assert len(report.done) == 5
    assert state_of(engine.directory).serial == 6
    edit(engine.directory, "replicas: 2", "replicas: 3")
    _, report = engine.apply()
    assert report.done == {DEPLOYMENT: "update"}
    assert state_of(engine.directory).serial == 7


def test_a_new_deployment_id_is_recorded_before_the_provider_starts_it(engine, fake) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    original = fake.apply

    async def spy(request):  # type: ignore[no-untyped-def]
        if request.kind == "deployment":
            seen.append(state_of(engine.directory).counters.get("deployment", 1))
        return await original(request)

    fake.apply = spy
    _, report = engine.apply()
    assert report.ok
    assert seen == [2]  # id 1 handed out and saved before the provider was called


def test_source_change_rolls_out_build_2(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    source = engine.directory / "add.py"
    source.write_text(source.read_text() + "\n# changed\n")
    run, report = engine.apply()
    assert report.done == {"build.numbers/add#2": "create", DEPLOYMENT: "create-then-delete"}
    assert run.plan.change_for(DEPLOYMENT).reason is ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED
    state = state_of(engine.directory)
    assert state.resources[DEPLOYMENT].attributes["build"] == 2
    assert [b.number for b in state.builds[MODEL]] == [1, 2]
    assert BUILD1 in state.resources  # kept for rollback
    # roll back by pinning build 1: no new build
    edit(engine.directory, "deployment: {replicas: 2,", "deployment: {build: 1, replicas: 2,")
    _, report = engine.apply()
    assert report.done == {DEPLOYMENT: "create-then-delete"}
    assert fake.world[DEPLOYMENT]["build"] == 1
    assert [b.number for b in state_of(engine.directory).builds[MODEL]] == [1, 2]


def test_removing_the_model_deletes_deployment_before_model(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    path = engine.directory / "cmlplan.yaml"
    text = path.read_text()
    path.write_text(text[: text.index("---\napiVersion: cmlplan/v1\nkind: Model")])
    events = Recorder()
    _, report = engine.apply(parallelism=1, events=events)
    assert report.ok and set(report.done.values()) == {"delete"}
    order = [address for address, _ in events.order]
    assert order.index(DEPLOYMENT) < order.index(MODEL)
    assert order.index(BUILD1) < order.index(MODEL)
    assert set(fake.world) == {"proxy.default"}
    assert set(state_of(engine.directory).resources) == {"project.numbers", "proxy.default"}
    assert not (engine.directory / ".cmlplan" / "keys" / "model.numbers_add").exists()


def test_target_applies_only_the_target_and_its_dependencies(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    _, report = engine.apply(targets=(DEPLOYMENT,))
    assert set(report.done) == {"project.numbers", MODEL, BUILD1, DEPLOYMENT}
    assert "proxy.default" not in fake.world
    run = engine.plan()
    assert [c.address for c in run.plan.changes if c.action.changes] == ["proxy.default"]


def test_replace_access_key_writes_a_new_key_and_updates_the_deployment(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    first = Recorder()
    engine.apply(events=first)
    old_hash = state_of(engine.directory).resources[MODEL].attributes["access_key_hash"]
    second = Recorder()
    _, report = engine.apply(events=second, replace=(f"{MODEL}.access_key",))
    assert report.done == {MODEL: "replace", DEPLOYMENT: "update"}
    state = state_of(engine.directory)
    new_hash = state.resources[MODEL].attributes["access_key_hash"]
    assert new_hash != old_hash
    assert state.resources[DEPLOYMENT].attributes["access_key_hash"] == new_hash == fake.world[DEPLOYMENT]["access_key_hash"]
    assert second.secrets[MODEL] != first.secrets[MODEL]
    assert (engine.directory / ".cmlplan" / "keys" / "model.numbers_add").read_text() == second.secrets[MODEL]


def test_provider_failure_skips_dependents_and_converges_later(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    fake.fail_on.add(BUILD1)
    _, report = engine.apply()
    assert not report.ok
    assert list(report.failed) == [BUILD1]
    assert report.failed[BUILD1] == "injected failure"  # keyed by address, so not repeated in the text
    assert set(report.skipped) == {DEPLOYMENT, "proxy.default"}
    assert report.skipped[DEPLOYMENT] == BUILD1
    assert set(report.done) == {"project.numbers", MODEL}
    state = state_of(engine.directory)
    assert set(state.resources) == {"project.numbers", MODEL}
    assert state.serial == 2
    fake.fail_on.clear()
    _, report = engine.apply()
    assert report.ok and set(report.done) == {BUILD1, DEPLOYMENT, "proxy.default"}
    assert not engine.plan().plan.has_changes


def test_stop_event_leaves_everything_not_started(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    _, report = engine.apply(stop_after_plan=True)
    assert sorted(report.not_started) == sorted(ALL) and not report.done and not report.ok
    assert fake.world == {}
    _, report = engine.apply()
    assert report.ok and len(report.done) == 5


def test_keys_are_0600_files_and_never_elsewhere(engine) -> None:  # type: ignore[no-untyped-def]
    path = engine.directory / "cmlplan.yaml"
    path.write_text(
        path.read_text()
        + "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: ci}\nspec: {user: alice, expires_in: 30d}\n"
    )
    events = Recorder()
    run, report = engine.apply(events=events)
    assert report.ok
    assert set(events.secrets) == {MODEL, "apikey.ci"}
    keys = engine.directory / ".cmlplan" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for address, secret in events.secrets.items():
        key_file = keys / address.replace("/", "_")
        assert key_file.read_text() == secret
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the secrets appear nowhere else: not in state, its backup, specs, or the plan JSON
    from cmlplan.plan import plan_to_json, render_text

    documents = [plan_to_json(run.plan), render_text(run.plan), plan_to_json(engine.plan().plan)]
    for root, _dirs, files in os.walk(engine.directory):
        if Path(root) == keys:
            continue
        for name in files:
            documents.append((Path(root) / name).read_bytes().decode("utf-8", "replace"))
    assert any("key_hash" in d for d in documents)  # the hashes are there
    for secret in events.secrets.values():
        assert len(secret) > 16
        assert not [d for d in documents if secret in d]
    state_text = (engine.directory / ".cmlplan" / "state.json").read_text()
    assert json.loads(state_text)["resources"]["apikey.ci"]["attributes"]["key_hash"] not in plan_to_json(run.plan)
