"""`cmlplan apply` and `cmlplan destroy`: make the live world match the specs (or go away)."""

from __future__ import annotations

import json
import sys

import click

from ..engine.applier import ApplyReport
from ..engine.planner import PlanOptions
from ..engine.session import refuse_uncompared
from ..engine.workspace import Workspace, check_saved_plan
from ..errors import CmlplanError
from ..plan import Plan, load_plan, render_text
from ..plan.style import Style, color_enabled
from .options import chdir_option, json_option, planning_options
from .progress import JsonProgress, TextProgress, without_address
from .running import Interrupts, run


def _apply_options(func):  # type: ignore[no-untyped-def]
    func = click.option("-auto-approve", "--auto-approve", "auto_approve", is_flag=True, help="do not ask for 'yes'")(func)
    func = click.option(
        "-parallelism", "--parallelism", "parallelism", type=click.IntRange(1, 256), default=10, show_default=True,
        help="resources changed at once",
    )(func)
    func = click.option(
        "-lock-timeout", "--lock-timeout", "lock_timeout", type=click.FloatRange(0), default=0.0,
        help="seconds to wait for another cmlplan holding the state lock",
    )(func)
    return func


@click.command("apply")
@click.argument("plan_file", required=False, metavar="[PLAN_FILE]")
@chdir_option
@planning_options
@_apply_options
@json_option
def apply_command(
    plan_file: str | None, chdir: str, refresh: bool, targets: tuple[str, ...], replace: tuple[str, ...],
    auto_approve: bool, parallelism: int, lock_timeout: float, as_json: bool,
) -> int:
    """Make the live world match the specs: plan, ask, apply; or apply a saved plan exactly.

    \b
    Examples:
      cmlplan apply                      # plan, show, ask for yes
      cmlplan apply -auto-approve        # in CI
      cmlplan apply plan.json            # exactly what `plan -out plan.json` showed
      cmlplan apply -replace model.iris/petal-width.access_key   # new access key
    """
    options = PlanOptions(refresh=refresh, targets=targets, replace=replace)
    return _converge(chdir, options, plan_file, auto_approve, parallelism, lock_timeout, as_json, "apply")


@click.command("destroy")
@chdir_option
@click.option("-target", "--target", "targets", multiple=True, metavar="ADDR", help="only this resource and its dependents")
@_apply_options
@json_option
def destroy_command(
    chdir: str, targets: tuple[str, ...], auto_approve: bool, parallelism: int, lock_timeout: float, as_json: bool
) -> int:
    """Destroy everything cmlplan manages in this workspace (replicas, proxy, builds, supervisord).

    \b
    Examples:
      cmlplan destroy
      cmlplan destroy -auto-approve
    """
    options = PlanOptions(destroy=True, targets=targets)
    return _converge(chdir, options, None, auto_approve, parallelism, lock_timeout, as_json, "destroy")


def _converge(
    chdir: str, options: PlanOptions, plan_file: str | None, auto_approve: bool, parallelism: int,
    lock_timeout: float, as_json: bool, operation: str,
) -> int:
    workspace = Workspace.open(chdir)
    saved: Plan | None = load_plan(plan_file) if plan_file else None
    if saved is not None:
        options = PlanOptions(
            destroy=saved.destroy, refresh=saved.refresh, targets=saved.targets, replace=saved.replace
        )
    out = sys.stdout
    style = Style(color_enabled(out))
    with workspace.locked(operation, wait=lock_timeout):
        state = workspace.read_state()

        async def go(interrupts: Interrupts) -> ApplyReport | None:
            async with workspace.session(state) as session:
                planned = await session.plan(options)
                plan = planned.plan
                if saved is not None:
                    check_saved_plan(saved, plan, state, workspace.specs_hash())
                if not as_json and saved is None:
                    click.echo(render_text(plan, color=style.enabled), nl=False)
                if operation == "apply":
                    refuse_uncompared(planned)
                if not plan.has_changes and not plan.drift and not plan.upgraded:
                    if operation == "destroy":
                        # nothing recorded, but a first apply that failed may have left a supervisor
                        await session.release_leftovers()
                    return None
                if plan.has_changes and saved is None and not auto_approve:
                    _confirm(operation)
                interrupts.arm()
                events = JsonProgress(out) if as_json else TextProgress(out)
                if not as_json and plan.has_changes:
                    click.echo("")
                return await session.apply(planned, events, parallelism, interrupts.stop)

        report = run(go)
    if report is None:
        if as_json:
            click.echo(json.dumps({"type": "summary", "ok": True, "changes": 0}))
        return 0
    return _summarize(report, operation, as_json, style)


def _confirm(operation: str) -> None:
    if not sys.stdin.isatty():
        raise CmlplanError(f"{operation} needs -auto-approve when no one can answer (stdin is not a terminal)")
    question = "Do you want to perform these actions?" if operation == "apply" else "Really destroy everything?"
    click.echo(f"\n{question}\n  Only 'yes' will be accepted to approve.\n")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        raise CmlplanError(f"{operation} cancelled (the answer was not 'yes'); nothing was changed")


def _summarize(report: ApplyReport, operation: str, as_json: bool, style: Style) -> int:
    counts = {"added": 0, "changed": 0, "replaced": 0, "destroyed": 0}
    names = {"create": "added", "update": "changed", "replace": "replaced", "create-then-delete": "replaced", "delete": "destroyed"}
    for action in report.done.values():
        counts[names[action]] += 1
    if as_json:
        click.echo(
            json.dumps(
                {
                    "type": "summary",
                    "ok": report.ok,
                    **counts,
                    "failed": report.failed,
                    "skipped": report.skipped,
                    "not_started": report.not_started,
                    "state_upgrades": report.upgraded,
                    "seconds": round(report.seconds, 3),
                }
            )
        )
        return 0 if report.ok else 1
    resources = ", ".join(f"{n} {k}" for k, n in counts.items())
    if report.ok:
        title = "Apply complete!" if operation == "apply" else "Destroy complete!"
        upgraded = f" State upgraded: fingerprints of {report.upgraded} rewritten." if report.upgraded else ""
        click.echo(style(f"\n{title} Resources: {resources}.{upgraded} ({report.seconds:.1f}s)", "green", "bold"))
        return 0
    click.echo("")
    for address, error in report.failed.items():
        first = without_address(address, error).splitlines()[0] if error else ""
        click.echo(style(f"Error: {address}: {first}", "red"), err=True)
    for address, cause in report.skipped.items():
        click.echo(f"Skipped {address}: it depends on {cause}, which failed", err=True)
    if report.not_started:
        why = "after the state write failed" if report.state_error else "interrupted"
        click.echo(f"Not started ({why}): {', '.join(report.not_started)}", err=True)
    if report.state_error:
        saved = (
            "The state write failed, so the last action done is not recorded; the state file holds"
            " what was recorded before it. Fix the cause (disk space, permissions), then run again to converge."
        )
    else:
        saved = "State is saved; run again to converge."
    click.echo(
        style(
            f"\n{operation.capitalize()} incomplete: {resources}; {len(report.failed)} failed,"
            f" {len(report.skipped) + len(report.not_started)} not done. {saved}",
            "red", "bold",
        )
    )
    return 1
