"""`cmlplan state list|show|rm|pull|push|migrate` and `cmlplan force-unlock`: inspect, move and repair state."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from ..engine.addresses import parse_address
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from ..specs.workspace import StateSettings
from ..state import transfer
from ..state.document import StateDocument
from ..state.lock import LockInfo
from ..state.open import open_backend
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
      cmlplan state pull > state.json     # the whole document
      cmlplan state push state.json       # same lineage, not older
      cmlplan state migrate --to postgres # then switch the Workspace spec
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


@state_group.command("pull")
@chdir_option
@json_option
def state_pull(chdir: str, as_json: bool) -> None:
    """Print the whole state document (JSON, secrets only as hashes), wherever it is kept.

    \b
    Example:
      cmlplan state pull > backup.json
    """
    state = _state(Workspace.open(chdir))
    del as_json  # the document is JSON already; the flag is accepted like on every command
    click.echo(state.to_json(), nl=False)


@state_group.command("push")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-force", "--force", "force", is_flag=True, help="push even an older serial (never another lineage)")
@chdir_option
@json_option
def state_push(file: Path, force: bool, chdir: str, as_json: bool) -> None:
    """Replace the stored state with FILE: refused for another lineage or an older serial.

    \b
    Examples:
      cmlplan state push fixed.json
      cmlplan state push - < fixed.json
    """
    raw = sys.stdin.buffer.read() if str(file) == "-" else _read_file(file)
    source = "standard input" if str(file) == "-" else f"state file {file}"
    pushed = StateDocument.from_json(raw, source.removeprefix("state file "))
    workspace = Workspace.open(chdir)
    with workspace.locked("state push"):
        written = transfer.push(workspace.backend, pushed, source, force)
    if as_json:
        click.echo(json.dumps({"pushed": str(file), "lineage": written.lineage, "serial": written.serial}))
    else:
        click.echo(f"Pushed {source} to {workspace.backend.describe()} as serial {written.serial}.")


@state_group.command("migrate")
@click.option("--to", "-to", "to", type=click.Choice(["postgres", "file"]), required=True, help="backend to move the state to")
@click.option(
    "--dsn-env", "-dsn-env", "dsn_env", default="CMLPLAN_STATE_DSN", show_default=True, metavar="NAME",
    help="environment variable holding the PostgreSQL connection string",
)
@click.option("--workspace", "-workspace", "workspace_name", metavar="NAME", help="state name in the database (default: the Workspace's name)")
@click.option("--path", "-path", "path", default=".cmlplan/state.json", show_default=True, help="state file (--to file)")
@chdir_option
@json_option
def state_migrate(to: str, dsn_env: str, workspace_name: str | None, path: str, chdir: str, as_json: bool) -> None:
    """Move the state to another backend, lineage and serial kept; then point the Workspace spec at it.

    \b
    Example:
      CMLPLAN_STATE_DSN=postgresql://... cmlplan state migrate --to postgres --workspace prod
    """
    workspace = Workspace.open(chdir)
    if to == "postgres":
        settings = StateSettings(backend="postgres", dsn=f"${{env:{dsn_env}}}", workspace=workspace_name)
        spec = f'state: {{backend: postgres, dsn: "${{env:{dsn_env}}}", workspace: {workspace_name or workspace.name}}}'
    else:
        settings = StateSettings(backend="file", path=path)
        spec = f"state: {{path: {path}}}"
    destination = open_backend(settings, workspace.directory, workspace.environ, workspace.name)
    if destination.describe() == workspace.backend.describe():
        raise CmlplanError(f"the state is already in {destination.describe()}; nothing to migrate")
    with ExitStack() as locks:
        locks.enter_context(workspace.locked("state migrate"))
        locks.enter_context(destination.lock(LockInfo.create("state migrate")))
        doc = transfer.migrate(workspace.backend, destination)
    if as_json:
        click.echo(json.dumps({"from": workspace.backend.describe(), "to": destination.describe(),
                               "lineage": doc.lineage, "serial": doc.serial, "spec": spec}))
        return
    click.echo(f"Migrated serial {doc.serial} (lineage {doc.lineage}) from {workspace.backend.describe()} to {destination.describe()}.")
    click.echo(f"Now set in the Workspace spec: {spec}")
    click.echo(f"The old state stays in {workspace.backend.describe()}; remove it once the spec points to the new one.")


def _read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise CmlplanError(f"cannot read state file {file}: {exc.strerror or exc}") from None


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
