"""`cmlplan state list|show|rm` and `cmlplan force-unlock`: inspect and repair the state."""

from __future__ import annotations

import json

import click

from ..engine.addresses import parse_address
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from ..values import mask
from .options import chdir_option, json_option


@click.group("state")
def state_group() -> None:
    """Inspect or edit the recorded state.

    \b
    Examples:
      cmlplan state list
      cmlplan state show deployment.iris/petal-width
      cmlplan state rm apikey.old-ci      # forget it; nothing is destroyed
    """


def _state(workspace: Workspace):  # type: ignore[no-untyped-def]
    state = workspace.read_state()
    if state is None:
        raise CmlplanError(f"no state yet in {workspace.backend.describe()}; run cmlplan apply first")
    return state


@state_group.command("list")
@chdir_option
@json_option
def state_list(chdir: str, as_json: bool) -> None:
    """List every recorded resource address.

    \b
    Example:
      cmlplan state list --json
    """
    state = _state(Workspace.open(chdir))
    addresses = sorted(state.resources)
    if as_json:
        click.echo(json.dumps({"serial": state.serial, "lineage": state.lineage, "resources": addresses}, indent=2))
    else:
        for address in addresses:
            click.echo(address)


@state_group.command("show")
@click.argument("address")
@chdir_option
@json_option
def state_show(address: str, chdir: str, as_json: bool) -> None:
    """Show one resource's recorded attributes (hashes masked).

    \b
    Example:
      cmlplan state show model.iris/petal-width
    """
    state = _state(Workspace.open(chdir))
    key = str(parse_address(address))
    resource = state.resources.get(key)
    if resource is None:
        raise CmlplanError(f"{address}: not in the state (see cmlplan state list)")
    data = {"address": key, "kind": resource.kind, "provider": resource.provider,
            "attributes": mask(resource.attributes), "dependencies": resource.dependencies,
            "created_at": resource.created_at.isoformat(), "updated_at": resource.updated_at.isoformat()}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"# {key} ({resource.kind}, provider {resource.provider})")
    for name, value in data["attributes"].items():
        click.echo(f"{name} = {json.dumps(value, sort_keys=True)}")
    if resource.dependencies:
        click.echo(f"depends on: {', '.join(resource.dependencies)}")


@state_group.command("rm")
@click.argument("addresses", nargs=-1, required=True)
@chdir_option
@json_option
def state_rm(addresses: tuple[str, ...], chdir: str, as_json: bool) -> None:
    """Forget resources without destroying them (cmlplan stops managing them).

    \b
    Example:
      cmlplan state rm apikey.old-ci
    """
    workspace = Workspace.open(chdir)
    with workspace.locked("state rm"):
        state = _state(workspace)
        keys = [str(parse_address(a)) for a in addresses]
        missing = [k for k in keys if k not in state.resources]
        if missing:
            raise CmlplanError(f"{missing[0]}: not in the state; nothing was removed")
        for key in keys:
            state.remove_resource(key)
        written = workspace.backend.write(state)
    if as_json:
        click.echo(json.dumps({"removed": keys, "serial": written.serial}))
    else:
        for key in keys:
            click.echo(f"Removed {key} from the state (nothing was destroyed).")


@click.command("force-unlock")
@click.argument("lock_id")
@chdir_option
@json_option
def force_unlock_command(lock_id: str, chdir: str, as_json: bool) -> None:
    """Remove a state lock left by a cmlplan that died. Only when you are sure it is gone.

    \b
    Example:
      cmlplan force-unlock 0b8f3c2e-...   # the id the "state is locked" error printed
    """
    workspace = Workspace.open(chdir)
    workspace.backend.force_unlock(lock_id)
    if as_json:
        click.echo(json.dumps({"unlocked": lock_id}))
    else:
        click.echo(f"Lock {lock_id} removed. The state can be changed again.")
