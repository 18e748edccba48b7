"""cmlplan SIGKILLed at every step of the first apply of add-numbers.

The first apply is a chain of five actions (project, model, build, deployment, proxy), each saved to
state before its "complete" line is printed. The CLI is run through pausing_cli.py, which sleeps
right after a chosen output line, and is killed there: so "killed after k actions" is exact, and
the mid-action kill points (a half-made build, replicas started but not recorded, a proxy started
but not recorded) are hit every time. After each kill:

- state.json parses and is exactly the document after k actions (the first k resources; serial k,
  plus one once the deployment's id was recorded, which happens before its replicas start);
- the lock remains, and apply refuses, naming the holder and ``cmlplan force-unlock <id>``;
- after force-unlock, apply converges, ``plan -detailed-exitcode`` is 0, and every supervisord
  program belongs to what state records (no orphaned replica or proxy).
"""

from __future__ import annotations

import pytest
from faultkit import FaultWorkspace, kill_group, lock_holder, wait_for

pytestmark = pytest.mark.slow

ORDER = ["project.numbers", "model.numbers/add", "build.numbers/add#1", "deployment.numbers/add", "proxy.default"]

# (id, the output line to kill at, how many actions were saved by then, the state's serial then)
KILL_POINTS = [
    ("k0-project-creating", r"^project\.numbers: Creating", 0, 0),
    ("k1-after-project", r"^project\.numbers: Creation complete", 1, 1),
    ("k2-after-model", r"^model\.numbers/add: Creation complete", 2, 2),
    ("k2-mid-build", r"^build\.numbers/add#1: .*creating venv", 2, 2),
    ("k3-after-build", r"^build\.numbers/add#1: Creation complete", 3, 3),
    ("k3-mid-deployment", r"^deployment\.numbers/add: replica add-1-1-numbers is healthy", 3, 4),
    ("k4-after-deployment", r"^deployment\.numbers/add: Creation complete", 4, 5),
    ("k4-mid-proxy", r"^proxy\.default: proxy serving on", 4, 5),
]


@pytest.mark.parametrize(
    ("pattern", "saved", "serial"), [p[1:] for p in KILL_POINTS], ids=[p[0] for p in KILL_POINTS]
)
def test_kill_at_every_step_then_force_unlock_converges(
    numbers: FaultWorkspace, pattern: str, saved: int, serial: int
) -> None:
    process, lines = numbers.run_until_line(pattern, "apply", "-auto-approve")
    kill_group(process)
    assert process.returncode == -9, lines

    # state on disk is a complete document: exactly the one written after `saved` actions
    state = numbers.state()
    if saved == 0:
        assert state is None, "no action finished, so no state may have been written"
    else:
        assert state is not None
        assert state.serial == serial
        assert sorted(state.resources) == sorted(ORDER[:saved])
    assert not list(numbers.state_path.parent.glob(".state.json.*.tmp")), "a temp file of the state write was left"

    # the killed run's lock stays; apply refuses and says who holds it and how to unlock
    assert numbers.lock_path.exists()
    holder = lock_holder(numbers)
    assert holder["pid"] == process.pid and holder["operation"] == "apply"
    refused = numbers.cli("apply", "-auto-approve", check=False)
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert f"pid {process.pid}" in message and f"cmlplan force-unlock {holder['id']}" in message, message
    assert numbers.state_path.exists() == (saved > 0) and (numbers.state() or state) == state, "refused apply wrote state"

    numbers.cli("force-unlock", holder["id"])
    assert not numbers.lock_path.exists()
    numbers.apply()
    assert numbers.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    numbers.assert_no_orphans()
    wait_for(
        lambda: all(s == "RUNNING" for s, _pid in numbers.programs_by_name().values()), 15, what="all RUNNING"
    )
    status, body = numbers.call("model.numbers/add", {"a": 2, "b": 40})
    assert (status, body.get("response")) == (200, {"result": 42})


def test_kill_mid_deployment_then_fewer_replicas_leaves_no_orphan(numbers: FaultWorkspace) -> None:
    """Replicas started by a killed apply are not in state; a later apply with other specs must not
    leave them running (here replicas: 2 -> 1, so the killed run's second replica is not reused)."""
    process, _lines = numbers.run_until_line(
        r"^deployment\.numbers/add: replica add-1-1-numbers is healthy", "apply", "-auto-approve"
    )
    kill_group(process)
    assert len([n for n in numbers.programs_by_name() if n.startswith("r.numbers.add.d1.")]) == 2
    numbers.cli("force-unlock", lock_holder(numbers)["id"])
    numbers.replace_in_spec("replicas: 2", "replicas: 1")
    numbers.apply()
    assert numbers.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    numbers.assert_no_orphans()
    assert len(numbers.state_show("deployment.numbers/add")["attributes"]["processes"]) == 1


def test_kill_mid_rollout_then_revert_removes_the_unrecorded_replicas(numbers: FaultWorkspace) -> None:
    """A redeploy killed after its new replicas (deployment 2) started, then the code change reverted:
    state still records deployment 1, which needs no change, but deployment 2's replicas run. Plan
    shows them as drift and apply removes them."""
    numbers.apply()
    source = numbers.dir / "add.py"
    original = source.read_text()
    source.write_text(original + "\n# v2\n")
    process, _lines = numbers.run_until_line(
        r"^deployment\.numbers/add: replica add-2-1-numbers is healthy", "apply", "-auto-approve"
    )
    kill_group(process)
    assert len([n for n in numbers.programs_by_name() if n.startswith("r.numbers.add.d2.")]) == 2
    numbers.cli("force-unlock", lock_holder(numbers)["id"])
    source.write_text(original)
    plan = numbers.cli("plan", "-detailed-exitcode", check=False)
    assert plan.returncode == 2 and "deployment.numbers/add" in plan.stdout, plan.stdout
    numbers.apply()
    assert numbers.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    numbers.assert_no_orphans()
    names = {p["name"] for p in numbers.state_show("deployment.numbers/add")["attributes"]["processes"]}
    assert len(names) == 2 and all(n.startswith("r.numbers.add.d1.") for n in names), names
    status, body = numbers.call("model.numbers/add", {"a": 1, "b": 1})
    assert (status, body.get("response")) == (200, {"result": 2})
