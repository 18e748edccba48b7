"""The `cmlplan` command end to end (FakeProvider as the local provider), through main() as users run it."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmlplan.cli.main import cli, main
from cmlplan.state.file import FileBackend
from cmlplan.state.lock import FileLock, LockInfo

MODEL = "model.numbers/add"


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def cmlplan(*args: str, input: str | None = None) -> Outcome:
    """Run `cmlplan ARGS` in click's CliRunner isolation; a bug's exception propagates (fails the test)."""
    runner = CliRunner()
    with runner.isolation(input=input, env={"NO_COLOR": "1", "FORCE_COLOR": None}) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def ws(add_numbers: Path, fake) -> str:  # type: ignore[no-untyped-def]
    return str(add_numbers)


def _commands() -> list[list[str]]:
    found = []
    for name, command in cli.commands.items():
        if hasattr(command, "commands"):
            found += [[name, sub] for sub in command.commands]
        found.append([name])
    return found


@pytest.mark.parametrize("words", _commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(words: list[str]) -> None:
    result = cmlplan(*words, "--help")
    assert result.code == 0, result
    assert "Example" in result.out


def test_validate_ok(ws: str) -> None:
    result = cmlplan("validate", "-C", ws)
    assert result.code == 0
    assert result.out == (
        "Success! 3 resources in specs of workspace 'add-numbers-demo' (1 Model, 1 Project, 1 Proxy) are valid.\n"
        "Plan adds what is derived from them: a build and a deployment per model (1 build, 1 deployment),"
        " so it counts 5 resources.\n"
    )
    data = json.loads(cmlplan("validate", "-C", ws, "--json").out)
    assert data == {
        "valid": True, "workspace": "add-numbers-demo", "resources": [MODEL, "project.numbers", "proxy.default"],
        "counts": {"Model": 1, "Project": 1, "Proxy": 1}, "derived_at_plan": {"build": 1, "deployment": 1},
    }
    plan = json.loads(cmlplan("plan", "-C", ws, "--json").out)
    assert len(plan["resource_changes"]) == 5  # what validate said plan would count


def test_validate_errors_one_line_each_without_traceback(ws: str) -> None:
    spec = Path(ws) / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("replicas: 2", "repilcas: 2").replace("kind: Project", "kind: Projet"))
    result = cmlplan("validate", "-C", ws)
    assert result.code == 1 and result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith("Error: ") and "cmlplan.yaml:" in line for line in lines)
    assert "did you mean 'replicas'?" in result.err and "did you mean 'Project'?" in result.err
    assert "Traceback" not in result.err
    data = json.loads(cmlplan("validate", "-C", ws, "--json").out)
    assert data["valid"] is False and len(data["errors"]) == 2


def test_validate_refuses_a_weak_user_key_in_one_line(ws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = Path(ws) / "cmlplan.yaml"
    spec.write_text(
        spec.read_text()
        + "---\napiVersion: cmlplan/v1\nkind: ApiKey\nmetadata: {name: ci}\nspec: {user: alice, value: '${env:CI_KEY}'}\n"
    )
    monkeypatch.delenv("CI_KEY", raising=False)
    assert cmlplan("validate", "-C", ws).code == 0  # unset: plan's to report, validate needs no environment
    monkeypatch.setenv("CI_KEY", "summer2026")
    result = cmlplan("validate", "-C", ws)
    assert result.code == 1 and result.out == ""
    [line] = result.err.splitlines()
    assert "cmlplan.yaml:" in line and "apikey.ci: spec.value: the key is too weak" in line
    assert "secrets.token_urlsafe(32)" in line and "summer2026" not in line
    data = json.loads(cmlplan("validate", "-C", ws, "--json").out)
    assert data["valid"] is False and "too weak" in data["errors"][0]
    monkeypatch.setenv("CI_KEY", "cak_Yq3v7r0xW1pB8kDZ-sL2tQ9uN4mC6eHfJ5aGiKoRbTy")
    assert cmlplan("validate", "-C", ws).code == 0


def test_plan_detailed_exitcode_then_apply(ws: str) -> None:
    first = cmlplan("plan", "-C", ws, "-detailed-exitcode")
    assert first.code == 2, first
    assert "Plan: 5 to add, 0 to change, 0 to replace, 0 to destroy." in first.out
    applied = cmlplan("apply", "-C", ws, "-auto-approve")
    assert applied.code == 0, applied
    assert "Apply complete! Resources: 5 added, 0 changed, 0 replaced, 0 destroyed." in applied.out
    again = cmlplan("plan", "-C", ws, "-detailed-exitcode")
    assert again.code == 0 and "No changes." in again.out


def test_plan_formats(ws: str) -> None:
    markdown = cmlplan("plan", "-C", ws, "-format", "markdown").out
    assert "**Plan: 5 to add, 0 to change, 0 to replace, 0 to destroy.**" in markdown
    assert markdown.count("<details><summary><code>+ ") == 5
    data = json.loads(cmlplan("plan", "-C", ws, "--json").out)
    assert data["summary"] == {"add": 5, "change": 0, "replace": 0, "destroy": 0, "moved": 0}


def test_apply_without_auto_approve_on_a_pipe_fails_clearly(ws: str, fake) -> None:  # type: ignore[no-untyped-def]
    result = cmlplan("apply", "-C", ws, input="yes\n")
    assert result.code == 1
    assert "Error: apply needs -auto-approve when no one can answer (stdin is not a terminal)" in result.err
    assert fake.world == {} and FileBackend(Path(ws) / ".cmlplan" / "state.json").read() is None


def test_saved_plan_applies_once(ws: str, tmp_path: Path) -> None:
    plan_file = str(tmp_path / "plan.json")
    made = cmlplan("plan", "-C", ws, "-out", plan_file)
    assert made.code == 0 and f"Saved the plan to {plan_file}" in made.out
    shown = cmlplan("show", plan_file)
    assert shown.code == 0 and "Plan: 5 to add" in shown.out
    applied = cmlplan("apply", "-C", ws, plan_file)
    assert applied.code == 0, applied
    assert "Apply complete!" in applied.out
    stale = cmlplan("apply", "-C", ws, plan_file)
    assert stale.code == 1
    assert stale.err == "Error: the saved plan was made when there was no state, but state exists now; plan again\n"
    assert "Traceback" not in stale.err


def test_a_stale_saved_plan_is_refused_after_another_apply(ws: str, tmp_path: Path) -> None:
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    spec = Path(ws) / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("replicas: 2", "replicas: 3"))
    plan_file = str(tmp_path / "plan.json")
    assert cmlplan("plan", "-C", ws, "-out", plan_file).code == 0
    assert cmlplan("apply", "-C", ws, plan_file).code == 0
    again = cmlplan("apply", "-C", ws, plan_file)
    assert again.code == 1 and "the saved plan is stale: state serial was 6 when it was made and is 7 now" in again.err


def test_held_lock_blocks_apply_until_force_unlock(ws: str) -> None:
    lock_path = FileBackend(Path(ws) / ".cmlplan" / "state.json").lock_path
    holder = FileLock(lock_path, LockInfo.create("apply"))
    info = holder.acquire()
    try:
        blocked = cmlplan("apply", "-C", ws, "-auto-approve")
        assert blocked.code == 1
        assert f"state is locked by {info.user}@{info.host} pid {info.pid}" in blocked.err
        assert f"cmlplan force-unlock {info.id}" in blocked.err
        wrong = cmlplan("force-unlock", "-C", ws, "not-the-id")
        assert wrong.code == 1 and "does not match" in wrong.err and lock_path.exists()
        unlocked = cmlplan("force-unlock", "-C", ws, info.id)
        assert unlocked.code == 0 and f"Lock {info.id} removed" in unlocked.out
        assert not lock_path.exists()
        assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    finally:
        holder.release()


def test_state_list_show_rm(ws: str) -> None:
    assert cmlplan("state", "list", "-C", ws).code == 1  # no state yet
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    listed = cmlplan("state", "list", "-C", ws)
    assert listed.out.splitlines() == ["build.numbers/add#1", "deployment.numbers/add", MODEL, "project.numbers", "proxy.default"]
    shown = cmlplan("state", "show", "-C", ws, MODEL)
    assert shown.code == 0 and "access_key_hash = \"(sensitive value)\"" in shown.out
    data = json.loads(cmlplan("state", "show", "-C", ws, MODEL, "--json").out)
    assert data["attributes"]["access_key_hash"] == "(sensitive value)"
    missing = cmlplan("state", "show", "-C", ws, "project.nope")
    assert missing.code == 1 and "project.nope: not in the state" in missing.err
    removed = cmlplan("state", "rm", "-C", ws, "proxy.default")
    assert removed.code == 0 and "Removed proxy.default from the state (nothing was destroyed)." in removed.out
    assert "proxy.default" not in cmlplan("state", "list", "-C", ws).out
    bad = cmlplan("state", "rm", "-C", ws, "not an address")
    assert bad.code == 1 and "is not a resource address" in bad.err


def test_output_and_raw_keys(ws: str, tmp_path: Path) -> None:
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    key = (Path(ws) / ".cmlplan" / "keys" / "model.numbers_add").read_text()
    listed = cmlplan("output", "-C", ws)
    assert listed.code == 0 and MODEL in listed.out and key not in listed.out
    assert "http://127.0.0.1:8788/model" in listed.out
    raw = cmlplan("output", "-C", ws, "-raw", MODEL)
    assert raw.code == 0 and raw.out == key + "\n"
    target = tmp_path / "key.txt"
    written = cmlplan("output", "-C", ws, "-raw", MODEL, "-o", str(target))
    assert written.code == 0 and key not in written.out
    assert target.read_text() == key + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert cmlplan("output", "-C", ws, "-raw").code == 1


def test_model_description_in_output_models_and_plan(ws: str) -> None:
    spec = Path(ws) / "cmlplan.yaml"
    old = "metadata: {name: add, project: numbers}"
    spec.write_text(spec.read_text().replace(old, "metadata: {name: add, project: numbers, description: Adds Two Numbers}"))
    plan = cmlplan("plan", "-C", ws)
    assert "# model.numbers/add (Adds Two Numbers) will be created" in plan.out, plan.out
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    output = cmlplan("output", "-C", ws)
    assert f"{MODEL}  # Adds Two Numbers\n" in output.out, output.out
    assert json.loads(cmlplan("output", "-C", ws, "--json").out)["models"][0]["title"] == "Adds Two Numbers"
    models = cmlplan("models", "-C", ws)
    assert "numbers/add (Adds Two Numbers)" in models.out, models.out
    assert json.loads(cmlplan("models", "-C", ws, "--json").out)["models"][0]["title"] == "Adds Two Numbers"


def test_model_description_is_only_for_models(ws: str) -> None:
    spec = Path(ws) / "cmlplan.yaml"
    spec.write_text(spec.read_text().replace("metadata: {name: numbers}", "metadata: {name: numbers, description: x}"))
    result = cmlplan("validate", "-C", ws)
    assert result.code == 1 and "metadata.description is only for Models" in result.err, result
    assert "Traceback" not in result.err


def test_show_state_and_json(ws: str) -> None:
    assert "No state" in cmlplan("show", "-C", ws).out
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    shown = cmlplan("show", "-C", ws)
    assert shown.code == 0 and "# deployment.numbers/add" in shown.out and "manifest = (3 files)" in shown.out
    data = json.loads(cmlplan("show", "-C", ws, "--json").out)
    assert data["serial"] == 6 and MODEL in data["resources"]


def test_schema_command() -> None:
    assert json.loads(cmlplan("schema").out)["$id"].endswith("spec-v1.json")
    assert json.loads(cmlplan("schema", "-plan").out)["$id"].endswith("plan-v1.json")
    assert cmlplan("schema", "-reference").out.startswith("# Spec reference")
    both = cmlplan("schema", "-plan", "-reference")
    assert both.code == 1 and "choose one" in both.err


def test_corrupt_state_is_refused_and_kept(ws: str) -> None:
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    state = Path(ws) / ".cmlplan" / "state.json"
    state.write_text('{"format_version": 1, "serial": ')
    for words in (["plan"], ["apply", "-auto-approve"], ["state", "list"]):
        result = cmlplan(*words, "-C", ws)
        assert result.code == 1, words
        assert "is not valid JSON" in result.err
        assert f"the previous state is in {state}.backup" in result.err
        assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert state.read_text() == '{"format_version": 1, "serial": '


def test_destroy(ws: str, fake) -> None:  # type: ignore[no-untyped-def]
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    result = cmlplan("destroy", "-C", ws, "-auto-approve")
    assert result.code == 0 and "Destroy complete! Resources: 0 added, 0 changed, 0 replaced, 5 destroyed." in result.out
    assert fake.world == {}
    assert not (Path(ws) / ".cmlplan" / "keys" / "model.numbers_add").exists()


def test_failed_apply_exits_1_and_reports(ws: str, fake) -> None:  # type: ignore[no-untyped-def]
    fake.fail_on.add("build.numbers/add#1")
    result = cmlplan("apply", "-C", ws, "-auto-approve")
    assert result.code == 1
    assert "Error: build.numbers/add#1: injected failure\n" in result.err  # the address once
    assert "Skipped deployment.numbers/add: it depends on build.numbers/add#1, which failed" in result.err
    assert "Apply incomplete" in result.out


def test_restart_and_logs_need_a_provider_that_can(ws: str) -> None:
    before = cmlplan("restart", "-C", ws, MODEL)
    assert before.code == 1 and "no state yet" in before.err
    assert cmlplan("apply", "-C", ws, "-auto-approve").code == 0
    for words in (["restart", MODEL], ["logs", MODEL]):
        result = cmlplan(*words, "-C", ws)
        assert result.code == 1 and "provider cannot" in result.err and "Traceback" not in result.err, result
    wrong = cmlplan("restart", "-C", ws, "project.numbers")
    assert wrong.code == 1 and "restart takes a model or deployment address" in wrong.err
    assert cmlplan("logs", "-C", ws, MODEL, "--since", "10x").code == 1
