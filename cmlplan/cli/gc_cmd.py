"""`cmlplan gc`: remove build artifacts (images, build folders, venvs) the state no longer records."""

from __future__ import annotations

import json

import click

from ..engine.workspace import Workspace
from .options import chdir_option, json_option
from .running import run


@click.command("gc")
@chdir_option
@click.option(
    "-lock-timeout", "--lock-timeout", "lock_timeout", type=click.FloatRange(0), default=0.0,
    help="seconds to wait for another cmlplan holding the state lock",
)
@json_option
def gc_command(chdir: str, lock_timeout: float, as_json: bool) -> int:
    """Remove builds that no build in the state uses: docker images, or local build folders and venvs.

    Builds stay after a model moves on (for rollback) and after destroy; gc frees their space.
    Builds still recorded in the state are kept.

    \b
    Examples:
      cmlplan gc
      cmlplan gc --json
    """
    workspace = Workspace.open(chdir)
    with workspace.locked("gc", wait=lock_timeout):
        state = workspace.read_state()

        async def go(_interrupts: object) -> dict[str, list[str]]:
            async with workspace.session(state) as session:
                return await session.collect_garbage()

        removed = run(go)
    total = sum(len(lines) for lines in removed.values())
    if as_json:
        click.echo(json.dumps({"removed": removed, "count": total}, indent=2))
        return 0
    for provider, lines in sorted(removed.items()):
        for line in lines:
            click.echo(f"{provider}: removed {line}")
    click.echo(f"gc: removed {total} item(s)." if total else "gc: nothing to remove.")
    return 0
