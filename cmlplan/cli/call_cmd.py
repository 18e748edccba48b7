"""`cmlplan call`: the CML "Test Model" widget in a terminal."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click

from ..engine.addresses import parse_address
from ..engine.workspace import Workspace
from ..errors import CmlplanError
from .inspect_cmd import endpoints
from .options import chdir_option, json_option


@click.command("call")
@click.argument("address")
@click.option("-input", "--input", "input_json", metavar="JSON", help="the request; default: the model's first example")
@click.option("-api-key", "--api-key", "api_key", metavar="ADDR", help="apikey.<name> to authenticate with (default: one that may call)")
@click.option("-timeout", "--timeout", "timeout", type=float, default=60.0, show_default=True, help="seconds")
@chdir_option
@json_option
def call_command(address: str, input_json: str | None, api_key: str | None, timeout: float, chdir: str, as_json: bool) -> int:
    """Call a deployed model through the serving proxy and print status, response, replica and latency.

    \b
    Examples:
      cmlplan call model.iris/petal-width
      cmlplan call model.numbers/add -input '{"a": 3, "b": 5}'
    """
    workspace = Workspace.open(chdir)
    target = str(parse_address(address))
    model = next((m for m in endpoints(workspace) if m["address"] == target), None)
    if model is None:
        raise CmlplanError(f"{address}: not deployed in this workspace (see cmlplan output)")
    if input_json is None:
        request: Any = model["example_input"]
    else:
        try:
            request = json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise CmlplanError(f"-input: not valid JSON ({exc.msg} at column {exc.colno})") from None
    access_key = workspace.keys.read(target)
    if access_key is None:
        raise CmlplanError(f"{target}: no access key file at {workspace.keys.path_for(target)}")
    headers = {"Content-Type": "application/json"}
    if model["authentication"]:
        headers["Authorization"] = f"Bearer {_api_key(workspace, target, api_key)}"
    body = json.dumps({"accessKey": access_key, "request": request}).encode()
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(model["url"], data=body, headers=headers, method="POST"), timeout=timeout
        ) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CmlplanError(f"{target}: cannot reach the proxy at {model['url']} ({getattr(exc, 'reason', exc)})") from None
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        answer = json.loads(raw)
    except json.JSONDecodeError:
        answer = {"success": False, "errors": {"proxy.invalid": raw[:200].decode(errors="replace")}}
    if as_json:
        click.echo(json.dumps({"status": status, "latency_ms": round(latency_ms, 2), "body": answer}, indent=2))
    else:
        click.echo(f"status:   {status}")
        if answer.get("success"):
            click.echo(f"response: {json.dumps(answer.get('response'))}")
            click.echo(f"replica:  {answer.get('ReplicaID')}")
            click.echo(f"uuid:     {answer.get('uuid')}")
        else:
            click.echo(f"errors:   {json.dumps(answer.get('errors'))}")
        click.echo(f"latency:  {latency_ms:.1f} ms")
    return 0 if 200 <= status < 300 else 1


def _api_key(workspace: Workspace, model: str, chosen: str | None) -> str:
    state = workspace.read_state()
    resources = state.resources if state else {}
    if chosen:
        key_address = str(parse_address(chosen))
        key = workspace.keys.read(key_address)
        if key is None:
            raise CmlplanError(f"{chosen}: no key file at {workspace.keys.path_for(key_address)}")
        return key
    project = str((resources.get(model).attributes if model in resources else {}).get("project"))
    collaborators = (resources.get(f"project.{project}").attributes if f"project.{project}" in resources else {}).get("collaborators") or {}
    for address, resource in sorted(resources.items()):
        if resource.kind == "apikey" and resource.attributes.get("user") in collaborators:
            key = workspace.keys.read(address)
            if key is not None:
                return key
    raise CmlplanError(f"{model} needs an API key: none of this workspace's key files belongs to a collaborator of project {project!r}; pass -api-key")
