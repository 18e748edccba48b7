"""The same cases on every provider (fake, local, docker, kubernetes on the fake API): plan per kind, create, update in place,
replace, drift, the failure paths of a rollout, and delete.

The cases run in file order on one workspace per provider (module scope: a real provider's first
build takes a while); each case states what it starts from. In every failure path the apply fails
with a clear message, the old replicas keep serving (the model is called), state still records
them, and nothing the failed rollout started is left running.
"""

from __future__ import annotations

import pytest
from subjects import DEPLOYMENT, MODEL, Subject

pytestmark = pytest.mark.slow

GOOD_MODEL = "def add(args):\n    return {'result': args['a'] + args['b']}\n"
CRASHING_MODEL = "raise SystemExit('this model cannot even be imported')\n"
WRONG_MODEL = "def add(args):\n    return {'result': args['a'] - args['b']}\n"


def test_plan_creates_every_kind_the_provider_declares(subject: Subject) -> None:
    plan = subject.plan()
    kinds = {c["address"].split(".", 1)[0]: c["action"] for c in plan["resource_changes"]}
    assert kinds == {"project": "create", "model": "create", "build": "create", "deployment": "create", "proxy": "create"}
    deployment = next(c for c in plan["resource_changes"] if c["address"] == DEPLOYMENT)
    assert deployment["after"]["processes"] == "(known after apply)"


def test_create_serves_the_model(subject: Subject) -> None:
    subject.write_model(GOOD_MODEL)
    subject.must_apply()
    assert subject.call(3, 5) == (200, {"result": 8})
    assert subject.running_replicas() == subject.recorded_replicas()
    assert len(subject.recorded_replicas()) == 2
    assert subject.actions() == {}


def test_update_in_place_keeps_the_deployment(subject: Subject) -> None:
    before = subject.attributes(DEPLOYMENT)
    subject.edit("cmlplan.yaml", "replicas: 2", "replicas: 1")
    assert subject.actions() == {DEPLOYMENT: "update"}
    subject.must_apply()
    after = subject.attributes(DEPLOYMENT)
    assert after["deployment_id"] == before["deployment_id"]
    if subject.new_build_replaces:  # processes are the replicas: one of the old ones is kept
        assert len(after["processes"]) == 1 and after["processes"][0]["name"] in {p["name"] for p in before["processes"]}
    else:  # processes are the model's objects, the same ones; Kubernetes scaled the pods
        assert after["processes"] == before["processes"] and len(subject.recorded_replicas()) == 1
    assert subject.running_replicas() == subject.recorded_replicas()
    assert subject.call(3, 5) == (200, {"result": 8})
    subject.edit("cmlplan.yaml", "replicas: 1", "replicas: 2")
    subject.must_apply()
    assert len(subject.recorded_replicas()) == 2


def test_replace_rolls_out_a_new_deployment(subject: Subject) -> None:
    before = subject.attributes(DEPLOYMENT)
    subject.write_model(GOOD_MODEL + "# v2\n")
    actions = subject.actions()
    # kubernetes rolls a new build in place (the Deployment's RollingUpdate): an update, same id
    expected = "create-then-delete" if subject.new_build_replaces else "update"
    assert actions[DEPLOYMENT] == expected and actions["build.numbers/add#2"] == "create"
    old_replicas = subject.running_replicas()
    subject.must_apply()
    after = subject.attributes(DEPLOYMENT)
    if subject.new_build_replaces:
        assert after["deployment_id"] > before["deployment_id"]
    else:
        assert after["deployment_id"] == before["deployment_id"]
    assert not (old_replicas | {p["name"] for p in before["processes"]}) & subject.running_replicas()
    assert subject.running_replicas() == subject.recorded_replicas()
    assert subject.call(3, 5) == (200, {"result": 8})
    assert subject.actions() == {}


def test_drift_a_replica_removed_by_hand_is_restored(subject: Subject) -> None:
    if subject.provider == "kubernetes":
        pytest.skip(
            "Kubernetes replaces a deleted pod itself (no drift); objects deleted, scaled or edited by hand "
            "are drift in tests/providers/kubernetes/test_k8s_provider.py"
        )
    victim = sorted(subject.recorded_replicas())[0]
    subject.remove_replica_by_hand(victim)
    plan = subject.plan()
    assert [d["address"] for d in plan.get("resource_drift", [])] == [DEPLOYMENT]
    assert subject.actions() == {DEPLOYMENT: "update"}
    subject.must_apply()
    assert len(subject.recorded_replicas()) == 2
    assert subject.running_replicas() == subject.recorded_replicas()
    assert subject.actions() == {}


def _failed_rollout(subject: Subject, model: str, expected: str) -> None:
    serving = subject.recorded_replicas()
    subject.write_model(model)
    code, output = subject.apply()
    assert code == 1, output
    assert expected in output, output
    assert "the running ones keep serving" in output, output
    assert subject.recorded_replicas() == serving
    assert subject.running_replicas() == serving, "the failed rollout left replicas running"
    assert subject.call(3, 5) == (200, {"result": 8})
    subject.write_model(GOOD_MODEL + "# v2\n")  # back to what serves
    assert subject.actions() == {}


def test_new_replicas_never_healthy_leave_the_old_ones_serving(subject: Subject) -> None:
    if subject.provider == "fake":
        pytest.skip("the fake has no replicas to crash; test_an_injected_failure covers its failure path")
    _failed_rollout(subject, CRASHING_MODEL, "new replicas failed")


def test_failing_example_input_leaves_the_old_ones_serving(subject: Subject) -> None:
    if subject.provider == "fake":
        pytest.skip("the fake does not run the model; test_an_injected_failure covers its failure path")
    _failed_rollout(subject, WRONG_MODEL, "example input {\"a\": 3, \"b\": 5} answered")


def test_a_proxy_that_never_confirms_leaves_the_old_ones_serving(subject: Subject) -> None:
    if subject.provider == "fake":
        pytest.skip("the fake has no proxy; test_an_injected_failure covers its failure path")
    if subject.provider == "kubernetes":
        pytest.skip(
            "a new build keeps the model's route (the same Service), so no proxy reload is on its path; "
            "the fake API's proxy pods do not serve"
        )
    serving = subject.recorded_replicas()
    subject.write_model(GOOD_MODEL + "# v3\n")
    with subject.proxy_frozen():
        code, output = subject.apply()
    assert code == 1, output
    assert "did not load routing generation" in output and "the running ones keep serving" in output, output
    assert subject.recorded_replicas() == serving
    assert subject.running_replicas() == serving, "the new replicas of the failed rollout are still running"
    assert subject.call(3, 5) == (200, {"result": 8})
    assert subject.actions()[DEPLOYMENT] == "create-then-delete"  # the change is still to be made
    subject.must_apply()  # and, with the proxy back, it is
    assert subject.call(3, 5) == (200, {"result": 8})
    assert subject.running_replicas() == subject.recorded_replicas() != serving


def test_an_injected_failure_fails_the_apply_and_keeps_the_state(subject: Subject) -> None:
    if subject.provider != "fake":
        pytest.skip("real providers fail for real in the cases above")
    subject.fake.fail_on.add(DEPLOYMENT)  # type: ignore[attr-defined]
    serving = subject.recorded_replicas()
    subject.write_model(GOOD_MODEL + "# v3\n")
    code, output = subject.apply()
    subject.fake.fail_on.clear()  # type: ignore[attr-defined]
    assert code == 1 and f"{DEPLOYMENT}: injected failure" in output, output
    assert subject.recorded_replicas() == serving == subject.running_replicas()
    subject.must_apply()


def test_delete_removes_the_model_and_its_replicas(subject: Subject) -> None:
    text = (subject.dir / "cmlplan.yaml").read_text()
    head, _sep, _model = text.partition("---\napiVersion: cmlplan/v1\nkind: Model\n")
    (subject.dir / "cmlplan.yaml").write_text(head)
    actions = subject.actions()
    assert actions[DEPLOYMENT] == "delete" and actions[MODEL] == "delete"
    subject.must_apply()
    assert DEPLOYMENT not in subject.state()["resources"]
    assert subject.running_replicas() == set()
    assert subject.actions() == {}


def test_destroy_leaves_nothing_of_the_workspace_running(subject: Subject) -> None:
    code, output = subject.cli("destroy", "-auto-approve")
    assert code == 0, output
    assert subject.nothing_left() == []
