"""make_plan through Workspace.plan, with the FakeProvider standing in for the local provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmlplan.engine.planner import PlanError
from cmlplan.plan import Action, ActionReason
from cmlplan.providers.fake import FakeProvider

MODEL = "model.numbers/add"
DEPLOYMENT = "deployment.numbers/add"
SPEC = "cmlplan.yaml"


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / SPEC
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def actions(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.address: c.action.value for c in run.plan.changes if c.action.changes}


def test_first_plan_creates_everything(engine) -> None:  # type: ignore[no-untyped-def]
    run = engine.plan()
    assert actions(run) == {
        "project.numbers": "create",
        MODEL: "create",
        "build.numbers/add#1": "create",
        DEPLOYMENT: "create",
        "proxy.default": "create",
    }
    assert {c.reason for c in run.plan.changes} == {ActionReason.CREATE_BECAUSE_NEW}
    assert run.plan.lineage is None and run.plan.serial is None
    assert run.plan.change_for("build.numbers/add#1").notes == ("first build: 3 files",)
    assert run.plan.change_for(DEPLOYMENT).dependencies == (MODEL, "build.numbers/add#1")


def test_second_plan_is_a_noop(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    run = engine.plan()
    assert not run.plan.has_changes and actions(run) == {} and run.plan.drift == ()
    assert run.plan.serial is not None and run.plan.lineage is not None


def test_source_change_makes_build_2_and_replaces_the_deployment(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    source = engine.directory / "add.py"
    source.write_text(source.read_text() + "\n# a comment\n")
    run = engine.plan()
    assert actions(run) == {"build.numbers/add#2": "create", DEPLOYMENT: "create-then-delete"}
    build = run.plan.change_for("build.numbers/add#2")
    assert build.reason is ActionReason.CREATE_BECAUSE_NEW_BUILD
    assert build.notes == ("files: ~add.py (19 -> 21 lines)",)
    deployment = run.plan.change_for(DEPLOYMENT)
    assert deployment.reason is ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED
    assert deployment.action.symbol == "+/-"
    assert deployment.replace_paths == ("build", "build_hash")
    assert deployment.after["build"] == 2


def test_pinned_build_rolls_back_without_a_new_build(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    source = engine.directory / "add.py"
    source.write_text(source.read_text() + "\n# a comment\n")
    engine.apply()
    edit(engine.directory, "deployment: {replicas: 2,", "deployment: {build: 1, replicas: 2,")
    run = engine.plan()
    assert actions(run) == {DEPLOYMENT: "create-then-delete"}
    assert run.plan.change_for(DEPLOYMENT).after["build"] == 1
    assert not any(c.address.startswith("build.") and c.action.changes for c in run.plan.changes)
    assert run.plan.change_for("build.numbers/add#2").action is Action.NOOP  # kept for rollback


def test_pinning_a_missing_build_is_an_error(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    edit(engine.directory, "deployment: {replicas: 2,", "deployment: {build: 7, replicas: 2,")
    with pytest.raises(Exception, match=r"deployment.build 7 does not exist \(builds: 1\)"):
        engine.plan()


def test_replicas_change_is_an_update_in_place(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    edit(engine.directory, "replicas: 2", "replicas: 3")
    run = engine.plan()
    assert actions(run) == {DEPLOYMENT: "update"}
    change = run.plan.change_for(DEPLOYMENT)
    assert change.reason is ActionReason.UPDATE_BECAUSE_SPEC_CHANGED
    assert (change.before["replicas"], change.after["replicas"]) == (2, 3)


def test_request_timeout_change_updates_proxy_and_deployments_in_place(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    deployment_id = fake.world[DEPLOYMENT]["deployment_id"]
    edit(engine.directory, "request_timeout: 30s", "request_timeout: 45s")
    run = engine.plan()
    assert actions(run) == {"proxy.default": "update", DEPLOYMENT: "update"}
    change = run.plan.change_for(DEPLOYMENT)
    assert change.replace_paths == ()
    assert (change.before["request_timeout"], change.after["request_timeout"]) == (30, 45)
    _, report = engine.apply()
    assert report.ok
    assert fake.world[DEPLOYMENT]["deployment_id"] == deployment_id
    assert fake.world[DEPLOYMENT]["request_timeout"] == 45
    assert not engine.plan().plan.has_changes


def test_model_description_is_shown_and_an_in_place_update(engine) -> None:  # type: ignore[no-untyped-def]
    from cmlplan.plan import render_text

    engine.apply()
    edit(engine.directory, "metadata: {name: add, project: numbers}",
         "metadata: {name: add, project: numbers, description: Adds Two Numbers}")
    run = engine.plan()
    assert actions(run) == {MODEL: "update"}  # never the build or the deployment
    assert run.plan.change_for(MODEL).after["title"] == "Adds Two Numbers"
    text = render_text(run.plan)
    assert "# model.numbers/add (Adds Two Numbers) will be updated in place" in text
    assert engine.apply()[1].ok
    edit(engine.directory, "description: Adds Two Numbers}", "description: Sums}")
    assert actions(engine.plan()) == {MODEL: "update"}


def _remove_model(folder: Path) -> None:
    path = folder / SPEC
    text = path.read_text()
    path.write_text(text[: text.index("---\napiVersion: cmlplan/v1\nkind: Model")])


def test_removing_the_model_deletes_it_and_its_build_and_deployment(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    _remove_model(engine.directory)
    run = engine.plan()
    assert actions(run) == {MODEL: "delete", "build.numbers/add#1": "delete", DEPLOYMENT: "delete"}
    assert run.plan.change_for(MODEL).reason is ActionReason.DELETE_BECAUSE_NO_SPEC


def test_target_includes_dependencies_only(engine) -> None:  # type: ignore[no-untyped-def]
    run = engine.plan(targets=(DEPLOYMENT,))
    assert set(actions(run)) == {"project.numbers", MODEL, "build.numbers/add#1", DEPLOYMENT}
    assert run.plan.targets == (DEPLOYMENT,)


def test_unknown_target_and_replace_are_errors(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PlanError, match="-target deployment.numbers/sub: no such resource"):
        engine.plan(targets=("deployment.numbers/sub",))
    with pytest.raises(PlanError, match=r"\.access_key belongs to model addresses"):
        engine.plan(replace=("project.numbers.access_key",))


def test_replace_access_key(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    run = engine.plan(replace=(f"{MODEL}.access_key",))
    assert actions(run) == {MODEL: "replace", DEPLOYMENT: "update"}
    assert run.plan.change_for(MODEL).reason is ActionReason.REPLACE_BY_REQUEST
    assert run.plan.change_for(DEPLOYMENT).after["access_key_hash"] == "(known after apply)"


def test_prevent_destroy_blocks_a_destroy(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    edit(engine.directory, "kind: Project\nmetadata: {name: numbers}", "kind: Project\nmetadata: {name: numbers}\nlifecycle: {prevent_destroy: true}")
    with pytest.raises(PlanError, match=r"^project.numbers: lifecycle.prevent_destroy is set.*\(delete\)"):
        engine.plan(destroy=True)


def test_destroy_plan_deletes_everything(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    run = engine.plan(destroy=True)
    assert set(actions(run).values()) == {"delete"} and len(actions(run)) == 5
    assert {c.reason for c in run.plan.changes} == {ActionReason.DELETE_BECAUSE_DESTROY}


def test_ignore_changes_on_deployment_replicas(engine) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    edit(engine.directory, "replicas: 2", "replicas: 4")
    edit(engine.directory, "kind: Model\n", "kind: Model\nlifecycle: {ignore_changes: [deployment.replicas]}\n")
    run = engine.plan()
    assert actions(run) == {}


def test_drift_the_specs_ignore_is_not_in_the_plan(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    """An autoscaler owns replicas: the regular plan's drift section agrees with -refresh-only."""
    edit(engine.directory, "kind: Model\n", "kind: Model\nlifecycle: {ignore_changes: [deployment.replicas]}\n")
    engine.apply()
    fake.world[DEPLOYMENT]["replicas"] = 5  # and the world runs 5 processes
    run = engine.plan()
    assert run.plan.drift == () and actions(run) == {}
    fake.world[DEPLOYMENT]["memory"] = "1Gi"  # what is not ignored is still drift
    run = engine.plan()
    assert [d.address for d in run.plan.drift] == [DEPLOYMENT]


def test_drift_is_shown_and_corrected(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    fake.world[DEPLOYMENT]["replicas"] = 5
    run = engine.plan()
    assert [(d.address, d.prior["replicas"], d.live["replicas"]) for d in run.plan.drift] == [(DEPLOYMENT, 2, 5)]
    assert actions(run) == {DEPLOYMENT: "update"}
    assert run.plan.change_for(DEPLOYMENT).reason is ActionReason.UPDATE_BECAUSE_DRIFT


def test_deleted_outside_is_recreated(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    del fake.world["proxy.default"]
    run = engine.plan()
    assert actions(run) == {"proxy.default": "create"}
    assert run.plan.change_for("proxy.default").reason is ActionReason.CREATE_BECAUSE_GONE
    assert [(d.address, d.live) for d in run.plan.drift] == [("proxy.default", None)]


def test_no_refresh_trusts_the_state(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    engine.apply()
    fake.world[DEPLOYMENT]["replicas"] = 5
    run = engine.plan(refresh=False)
    assert actions(run) == {} and run.plan.drift == ()


def test_ignore_changes_also_ignores_drift_of_that_path(engine, fake: FakeProvider) -> None:  # type: ignore[no-untyped-def]
    edit(engine.directory, "kind: Model\n", "kind: Model\nlifecycle: {ignore_changes: [deployment.replicas]}\n")
    engine.apply()
    fake.world[DEPLOYMENT]["replicas"] = 6
    run = engine.plan()
    assert actions(run) == {}
    assert run.plan.drift == ()  # ignored, so not drift either (as -refresh-only)


def test_cdsw_build_sh_at_the_source_root_is_the_build_script(engine) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    engine.apply()
    script = engine.directory / "cdsw-build.sh"
    script.write_text("echo building\n")
    run = engine.plan()
    assert actions(run) == {"build.numbers/add#2": "create", DEPLOYMENT: "create-then-delete"}
    build = run.plan.change_for("build.numbers/add#2")
    assert build.after["build_script"] == "cdsw-build.sh"
    digest = hashlib.sha256(b"echo building\n").hexdigest()[:12]
    assert f"runs build script cdsw-build.sh (sha256 {digest})" in build.notes
    engine.apply()
    script.write_text("echo building again\n")  # an edit is a new build
    assert "build.numbers/add#3" in actions(engine.plan())
    edit(engine.directory, "authentication: false", "authentication: false\n  build: {script: none}")
    run = engine.plan()
    after = run.plan.change_for("build.numbers/add#3").after
    assert after["build_script"] is None and not [n for n in run.plan.change_for("build.numbers/add#3").notes if "runs" in n]


def test_a_named_build_script_wins_over_cdsw_build_sh(engine) -> None:  # type: ignore[no-untyped-def]
    (engine.directory / "cdsw-build.sh").write_text("echo default\n")
    (engine.directory / "setup.sh").write_text("echo mine\n")
    edit(engine.directory, "authentication: false", "authentication: false\n  build: {script: setup.sh}")
    assert engine.plan().plan.change_for("build.numbers/add#1").after["build_script"] == "setup.sh"
    edit(engine.directory, "build: {script: setup.sh}", "build: {script: missing.sh}")
    with pytest.raises(Exception, match="build.script 'missing.sh' is not in the source folder"):
        engine.plan()
