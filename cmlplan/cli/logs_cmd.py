"""`cmlplan logs ADDR`: what a model's replicas and build, or the proxy, wrote (stdout and stderr)."""

from __future__ import annotations

import json
import time

import click

from ..engine.logs import stream_logs
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from ..specs.units import parse_duration
from .options import chdir_option, json_option
from .running import run


@click.command("logs")
@click.argument("address")
@click.option("--replica", type=click.IntRange(0), default=None, help="only replica N (its index, from 0)")
@click.option("--since", "since", metavar="DURATION", default=None, help="only logs written in the last DURATION (10m, 2h)")
@click.option("-f", "--follow", is_flag=True, help="keep printing what is appended; Ctrl-C to stop")
@chdir_option
@json_option
def logs_command(address: str, replica: int | None, since: str | None, follow: bool, chdir: str, as_json: bool) -> None:
    """Show the logs of a model's replicas (also replaced ones) and its build, or of proxy.default.

    \b
    Examples:
      cmlplan logs model.numbers/add
      cmlplan logs model.numbers/add --replica 1 --since 10m -f
      cmlplan logs proxy.default --json
    """
    try:
        cutoff = time.time() - parse_duration(since) if since is not None else None
    except (TypeError, ValueError) as exc:
        raise CmlplanError(f"--since {since!r}: {exc}") from None
    workspace = Workspace.open(chdir)
    state = workspace.read_state()
    if state is None:
        raise CmlplanError(f"{address}: no state yet; apply first")

    async def go(_interrupts: object) -> int:
        count = 0
        async with workspace.session(state) as session:
            async for line in stream_logs(session, address, replica, cutoff, follow):
                count += 1
                if as_json:
                    click.echo(json.dumps({"source": line.source, "line": line.text}))
                else:
                    click.echo(f"{line.source} | {line.text}")
        return count

    try:
        count = run(go)
    except KeyboardInterrupt:
        return
    if count == 0 and not as_json:
        click.echo(f"No logs for {address}" + (f" in the last {since}" if since else "") + ".", err=True)
