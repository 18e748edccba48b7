"""Rollout.observed: what read reports of a deployment, from what the runtime runs (no engine needed)."""

from __future__ import annotations

from cmlplan.providers.local.runtime import _live, replica_program
from cmlplan.providers.local.supervisor import ProgramState
from cmlplan.providers.rollout import Rollout
from cmlplan.providers.runtime import LiveReplica, replica_token

PLANNED = {"project": "numbers", "name": "add", "deployment_id": 4}
OWNER = "deployment.numbers/add"


def _program(name: str, pid: int = 10) -> ProgramState:
    return ProgramState(name=name, group=name, state="RUNNING", pid=pid, started_at=None, exit_status=0, description="")


def test_replica_names_carry_the_owner_and_a_token_per_rollout() -> None:
    one, two = replica_token(), replica_token()
    assert one != two and len(one) == 6
    name = replica_program(PLANNED, one, 0)
    assert name == f"r.numbers.add.d4.{one}.0"
    live = _live(_program(name))
    assert (live.owner, live.role, live.facts) == (OWNER, "replica", {"pid": 10})
    assert _live(_program("cmlplan-proxy-0")).role == "proxy"


def test_unrecorded_replicas_of_the_owner_are_orphans_and_others_are_not() -> None:
    recorded = replica_program(PLANNED, "aaaaaa", 0)
    killed_run = replica_program(PLANNED, "bbbbbb", 0)  # same id and index, another run's token
    other_model = replica_program({**PLANNED, "name": "sub"}, "cccccc", 0)
    live = {n: _live(_program(n, pid=i)) for i, n in enumerate([recorded, killed_run, other_model])}
    observed = Rollout.observed({"processes": [{"name": recorded, "index": 0, "pid": 99}]}, live, owner=OWNER)
    assert observed["processes"] == [{"name": recorded, "index": 0, "pid": 0}, {"name": killed_run, "orphan": True}]
    # read of the proxy (no owner) never adds orphans
    assert Rollout.observed({"processes": []}, live)["processes"] == []


def test_a_recorded_process_with_another_identity_is_not_the_recorded_one() -> None:
    live = {"c1": LiveReplica("c1", OWNER, "replica", True, identity={"image_id": "sha256:new"})}
    recorded = {"processes": [{"name": "c1", "index": 0, "image_id": "sha256:old"}]}
    assert Rollout.observed(recorded, live)["processes"] == []
