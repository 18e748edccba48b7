"""`cmlplan restart ADDR`: CML's Restart without its downtime."""

from __future__ import annotations

import json

import click

from ..engine.restart import restart_deployment
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from .options import chdir_option, json_option
from .running import run


@click.command("restart")
@click.argument("address")
@click.option(
    "-lock-timeout", "--lock-timeout", "lock_timeout", type=click.FloatRange(0), default=0.0,
    help="seconds to wait for another cmlplan holding the state lock",
)
@chdir_option
@json_option
def restart_command(address: str, lock_timeout: float, chdir: str, as_json: bool) -> None:
    """Restart a model's replicas one at a time, with no failed request; build and deployment id stay.

    \b
    Examples:
      cmlplan restart model.numbers/add
      cmlplan restart deployment.numbers/add --json
    """
    workspace = Workspace.open(chdir)
    with workspace.locked("restart", wait=lock_timeout):
        state = workspace.read_state()
        if state is None:
            raise CmlplanError(f"{address}: no state yet; apply first")

        def progress(message: str) -> None:
            if not as_json:
                click.echo(f"{address}: {message}")

        async def go(_interrupts: object) -> dict[str, object]:
            async with workspace.session(state) as session:
                return await restart_deployment(session, address, progress)

        after = run(go)
    replicas = [p.get("name") for p in after.get("processes") or [] if isinstance(p, dict)]  # type: ignore[union-attr]
    if as_json:
        click.echo(json.dumps({"address": address, "deployment_id": after.get("deployment_id"),
                               "build": after.get("build"), "replicas": replicas}, indent=2))
        return
    click.echo(f"Restart complete: {len(replicas)} replica(s), build {after.get('build')}, "
               f"deployment {after.get('deployment_id')}.")
