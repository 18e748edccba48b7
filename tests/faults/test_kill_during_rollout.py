"""cmlplan SIGKILLed at each step of a code-change rollout (local provider), then force-unlock and
one apply must converge: the model answers, what runs is what state records (no orphan), and the
next plan shows no changes. A destroy after such a kill leaves nothing of the workspace running.

Before replica names carried a per-run token and the deployment id was recorded before anything
started, the re-apply handed out the killed run's id again, took its orphans for "old" replicas,
drained them, and reported success with zero replicas serving.
"""

from __future__ import annotations

import pytest
from faultkit import FaultWorkspace, kill_group, lock_holder, wait_for

pytestmark = pytest.mark.slow

# the rollout of deployment 2 (the first apply made deployment 1), killed right after each step
ROLLOUT_STEPS = [
    ("started", r"^deployment\.numbers/add: starting replica 2 "),
    ("verified", r"^deployment\.numbers/add: replica add-2-1-numbers answered"),
    ("routed", r"^deployment\.numbers/add: the proxy routes to \d+ replicas?"),
    ("draining", r"^deployment\.numbers/add: draining and stopping"),
]


def _kill_mid_rollout(numbers: FaultWorkspace, pattern: str) -> None:
    numbers.apply()
    source = numbers.dir / "add.py"
    source.write_text(source.read_text() + "\n# v2\n")
    process, lines = numbers.run_until_line(pattern, "apply", "-auto-approve")
    kill_group(process)
    assert process.returncode == -9, lines
    numbers.cli("force-unlock", lock_holder(numbers)["id"])


@pytest.mark.parametrize("pattern", [p for _, p in ROLLOUT_STEPS], ids=[i for i, _ in ROLLOUT_STEPS])
def test_kill_at_each_rollout_step_then_one_apply_converges(numbers: FaultWorkspace, pattern: str) -> None:
    _kill_mid_rollout(numbers, pattern)
    state = numbers.state()
    assert state is not None and state.counters["deployment"] == 3, "deployment 2 was recorded before it started"
    numbers.apply()
    assert numbers.cli("plan", "-detailed-exitcode", check=False).returncode == 0
    numbers.assert_no_orphans()
    processes = numbers.state_show("deployment.numbers/add")["attributes"]["processes"]
    assert len(processes) == 2 and all(p["name"].startswith("r.numbers.add.d3.") for p in processes), processes
    wait_for(lambda: all(s == "RUNNING" for s, _pid in numbers.programs_by_name().values()), 15, what="all RUNNING")
    status, body = numbers.call("model.numbers/add", {"a": 2, "b": 40})
    assert (status, body.get("response")) == (200, {"result": 42})


@pytest.mark.parametrize("pattern", [ROLLOUT_STEPS[0][1], ROLLOUT_STEPS[2][1]], ids=["started", "routed"])
def test_destroy_after_a_killed_rollout_leaves_nothing_running(numbers: FaultWorkspace, pattern: str) -> None:
    _kill_mid_rollout(numbers, pattern)
    numbers.cli("destroy", "-auto-approve")
    assert not numbers.supervisor.is_running(), numbers.programs_by_name()
    assert numbers.state() is None or not numbers.state().resources


def test_destroy_after_a_failed_first_apply_stops_supervisord(numbers: FaultWorkspace) -> None:
    (numbers.dir / "add.py").write_text("import no_such_module_anywhere\n")
    failed = numbers.apply(check=False)
    assert failed.returncode != 0
    destroyed = numbers.cli("destroy", "-auto-approve")
    assert destroyed.returncode == 0
    assert not numbers.supervisor.is_running(), numbers.programs_by_name()
