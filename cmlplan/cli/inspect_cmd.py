"""`cmlplan show` and `cmlplan output`: what is recorded, and how to call each model."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any

import click

from ..engine.addresses import parse_address
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from ..plan import load_plan, plan_to_json, render_text
from ..plan.style import color_enabled
from ..secrets import key_label
from ..values import mask
from .options import chdir_option, json_option


@click.command("show")
@click.argument("plan_file", required=False, metavar="[PLAN_FILE]")
@chdir_option
@json_option
def show_command(plan_file: str | None, chdir: str, as_json: bool) -> None:
    """Show a saved plan, or (without one) every resource in the state.

    \b
    Examples:
      cmlplan show
      cmlplan show plan.json --json
    """
    if plan_file:
        plan = load_plan(plan_file)
        if as_json:
            click.echo(plan_to_json(plan), nl=False)
        else:
            click.echo(render_text(plan, color=color_enabled(sys.stdout)), nl=False)
        return
    workspace = Workspace.open(chdir)
    state = workspace.read_state()
    if state is None:
        if as_json:
            click.echo(json.dumps({"resources": {}}))
        else:
            click.echo("No state: nothing has been applied in this workspace yet.")
        return
    resources = {a: {"kind": r.kind, "attributes": mask(r.attributes)} for a, r in sorted(state.resources.items())}
    if as_json:
        click.echo(json.dumps({"serial": state.serial, "lineage": state.lineage, "resources": resources}, indent=2))
        return
    click.echo(f"# state serial {state.serial}, lineage {state.lineage}")
    for address, data in resources.items():
        click.echo(f"\n# {address}")
        for name, value in data["attributes"].items():
            if name == "manifest":
                value = f"({len(value)} files)"
            click.echo(f"  {name} = {json.dumps(value, sort_keys=True) if not isinstance(value, str) else value}")


def endpoints(workspace: Workspace) -> list[dict[str, Any]]:
    """Per model: its endpoint, whether it needs an API key, and the key files on disk."""
    state = workspace.read_state()
    if state is None:
        return []
    proxy = next((r for r in state.resources.values() if r.kind == "proxy"), None)
    host = (proxy.attributes.get("host") if proxy else None) or "127.0.0.1"
    port = (proxy.attributes.get("port") if proxy else None) or 8787
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/model"
    api_keys = {a: r.attributes for a, r in sorted(state.resources.items()) if r.kind == "apikey"}
    found = []
    for address, resource in sorted(state.resources.items()):
        if resource.kind != "model":
            continue
        attributes = resource.attributes
        project = address.split(".", 1)[1].split("/", 1)[0]
        roles = (state.resources.get(f"project.{project}") or _NO_PROJECT).attributes.get("collaborators") or {}
        callers = [
            {"address": key, "user": attrs.get("user"), "role": roles[attrs.get("user")],
             "file": str(workspace.keys.path_for(key)), "expires": attrs.get("expires")}
            for key, attrs in api_keys.items() if attrs.get("user") in roles
        ]
        found.append(
            {
                "address": address,
                "title": attributes.get("title"),
                "url": url,
                "authentication": bool(attributes.get("authentication")),
                "access_key_file": str(workspace.keys.path_for(address)),
                "access_key_fingerprint": key_label(attributes.get("access_key_hash")),
                "api_keys": callers,
                "example_input": (attributes.get("examples") or [{}])[0].get("input", {}),
            }
        )
    return found


class _NoProject:
    attributes: dict[str, Any] = {}


_NO_PROJECT = _NoProject()


@click.command("output")
@click.argument("address", required=False)
@click.option("-raw", "--raw", "raw", is_flag=True, help="print the plaintext key of ADDR (model or apikey), or a registry's URI")
@click.option("-o", "--output-file", "output_file", metavar="FILE", help="with -raw: write the key to FILE (mode 0600)")
@chdir_option
@json_option
def output_command(address: str | None, raw: bool, output_file: str | None, chdir: str, as_json: bool) -> None:
    """Show each model's endpoint and a ready curl command (keys masked unless -raw), and each
    MLflow registry's tracking URI.

    \b
    Examples:
      cmlplan output
      cmlplan output -raw apikey.alice-ci -o ~/.alice.key
      export MLFLOW_TRACKING_URI=$(cmlplan output -raw registry.main)
    """
    workspace = Workspace.open(chdir)
    if raw and address and parse_address(address).kind == "registry":
        (found,) = _registries(workspace, str(parse_address(address))) or [None]
        if found is None:
            raise CmlplanError(f"{address}: no such registry in the state")
        click.echo(found["uri"])  # export MLFLOW_TRACKING_URI=$(cmlplan output -raw registry.main)
        return
    if raw:
        if not address:
            raise CmlplanError("-raw needs an address, e.g. cmlplan output -raw model.iris/petal-width")
        key = workspace.keys.read(str(parse_address(address)))
        if key is None:
            raise CmlplanError(f"{address}: no key file at {workspace.keys.path_for(str(parse_address(address)))}")
        if output_file:
            descriptor = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(key + "\n")
            os.chmod(output_file, 0o600)
            click.echo(f"Wrote the key of {address} to {output_file} (mode 0600).")
        else:
            click.echo(key)
        return
    models = endpoints(workspace)
    registries = _registries(workspace, str(parse_address(address)) if address else None)
    if address:
        models = [m for m in models if m["address"] == str(parse_address(address))]
        if not models and not registries:
            raise CmlplanError(f"{address}: no such model or registry in the state")
    if as_json:
        click.echo(json.dumps({"models": models, "registries": registries}, indent=2))
        return
    if not models and not registries:
        click.echo("No models deployed yet.")
        return
    for registry in registries:
        network = f" (containers: {registry['network_uri']})" if registry.get("network_uri") else ""
        click.echo(f"{registry['address']}  # {registry['mode']} MLflow registry")
        click.echo(f"  MLFLOW_TRACKING_URI={registry['uri']}{network}\n")
    for model in models:
        _echo_model(model)


def _registries(workspace: Workspace, address: str | None) -> list[dict[str, Any]]:
    """Each registry's tracking URI (and, on docker, where containers reach it)."""
    state = workspace.read_state()
    if state is None:
        return []
    return [
        {"address": a, "mode": r.attributes.get("mode"), "uri": r.attributes.get("uri"),
         "network_uri": r.attributes.get("network_uri")}
        for a, r in sorted(state.resources.items())
        if r.kind == "registry" and isinstance(r.attributes.get("uri"), str) and address in (None, a)
    ]


def _echo_model(model: dict[str, Any]) -> None:
    """The endpoint and a curl command that works when pasted: every variable it uses is set."""
    body = json.dumps({"accessKey": "$ACCESS_KEY", "request": model["example_input"]}).replace('"', '\\"')
    click.echo(f"{model['address']}" + (f"  # {model['title']}" if model.get("title") else ""))
    click.echo(f"  endpoint: {model['url']}")
    click.echo(f"  access key: {model['access_key_fingerprint'] or '?'}… (file {model['access_key_file']})")
    click.echo(f"  ACCESS_KEY=$(cat {shlex.quote(model['access_key_file'])})")
    auth = ""
    if model["authentication"]:
        callers = model["api_keys"]
        if not callers:
            click.echo(f"  # authentication is on and no ApiKey in the state belongs to a collaborator of project"
                       f" {model['address'].split('.', 1)[1].split('/', 1)[0]}: add one, apply, then set API_KEY")
        else:
            first = callers[0]
            others = f"; also {', '.join(c['address'] for c in callers[1:])}" if callers[1:] else ""
            click.echo(f"  API_KEY=$(cat {shlex.quote(first['file'])})   # {first['address']}:"
                       f" {first['user']}, {first['role']}{others}")
        auth = ' -H "Authorization: Bearer $API_KEY"'
    click.echo(f'  curl -s{auth} -d "{body}" {model["url"]}')
    click.echo("")
