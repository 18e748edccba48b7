"""`cmlplan plan`: show what apply would do."""

from __future__ import annotations

import sys

import click

from ..engine.planner import PlanOptions
from ..engine.workspace import Workspace
from ..plan import plan_to_json, render_markdown, render_text, save_plan
from ..plan.refresh_only import refresh_only, render_drift
from ..plan.style import color_enabled
from .options import chdir_option, json_option, planning_options
from .running import run


@click.command("plan")
@chdir_option
@planning_options
@click.option("-destroy", "--destroy", "destroy", is_flag=True, help="plan to destroy everything")
@click.option("-out", "--out", "out", metavar="FILE", help="save the plan; `cmlplan apply FILE` applies exactly it")
@click.option(
    "-detailed-exitcode", "--detailed-exitcode", "detailed", is_flag=True,
    help="exit 0 when nothing changes, 1 on error, 2 when there are changes",
)
@click.option(
    "-refresh-only", "--refresh-only", "only_drift", is_flag=True,
    help="report only what changed outside cmlplan (ignore_changes respected); with -detailed-exitcode, 2 means drift",
)
@click.option("-format", "--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", help="text or markdown (pull-request comments)")
@json_option
def plan_command(
    chdir: str, refresh: bool, targets: tuple[str, ...], replace: tuple[str, ...], destroy: bool,
    out: str | None, detailed: bool, only_drift: bool, fmt: str, as_json: bool,
) -> int:
    """Show what apply would change: specs vs state vs the live world.

    \b
    Examples:
      cmlplan plan
      cmlplan plan -out plan.json -target deployment.iris/petal-width
      cmlplan plan -detailed-exitcode -format markdown > plan.md   # PR comment
      cmlplan plan -refresh-only -detailed-exitcode --json           # scheduled drift job
    """
    if only_drift and (destroy or out or not refresh):
        raise click.UsageError("-refresh-only cannot be combined with -destroy, -out or -refresh=false")
    workspace = Workspace.open(chdir)
    options = PlanOptions(destroy=destroy, refresh=refresh, targets=targets, replace=replace)
    state = workspace.read_state()

    async def make(_interrupts: object) -> object:
        async with workspace.session(state) as session:
            return await session.plan(options)

    planned = run(make)
    plan = planned.plan  # type: ignore[attr-defined]
    if only_drift:
        plan = refresh_only(plan)
    if out:
        save_plan(plan, out)
    if as_json:
        click.echo(plan_to_json(plan), nl=False)
    elif only_drift and fmt == "text":
        click.echo(render_drift(plan), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(plan), nl=False)
    else:
        click.echo(render_text(plan, color=color_enabled(sys.stdout)), nl=False)
        if out:
            click.echo(f"\nSaved the plan to {out}. Apply exactly it with: cmlplan apply {out}")
    if detailed and (plan.drift if only_drift else plan.has_changes):
        return 2
    return 0
