"""`cmlplan validate` and `cmlplan schema`: check specs, print the spec format."""

from __future__ import annotations

import json
import os
from collections import Counter

import click

from ..engine.desired.apikey import weak_user_keys
from ..errors import CmlplanError
from ..specs import SpecError, load_config
from ..specs.reference import render_reference
from ..specs.schema import spec_schema
from .options import chdir_option, json_option


@click.command("validate")
@chdir_option
@json_option
def validate_command(chdir: str, as_json: bool) -> int:
    """Check every spec file in the folder; each problem is one line with file:line:column.

    \b
    Examples:
      cmlplan validate
      cmlplan validate -C examples/iris --json
    """
    try:
        config = load_config(chdir)
        weak = weak_user_keys(config, os.environ)
        if weak:
            raise SpecError(weak)
    except SpecError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "errors": exc.problems}, indent=2))
            return 1
        raise
    addresses = sorted(config.resources)
    kinds = Counter(resource.kind for resource in config.resources.values())
    models = kinds.get("Model", 0)
    if as_json:
        click.echo(json.dumps({
            "valid": True, "workspace": config.workspace.name, "resources": addresses,
            "counts": dict(sorted(kinds.items())), "derived_at_plan": {"build": models, "deployment": models},
        }, indent=2))
        return 0
    counted = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    click.echo(f"Success! {_plural(len(addresses), 'resource')} in specs of workspace {config.workspace.name!r}"
               f"{f' ({counted})' if counted else ''} are valid.")
    if models:
        click.echo(f"Plan adds what is derived from them: a build and a deployment per model"
                   f" ({_plural(models, 'build')}, {_plural(models, 'deployment')}), so it counts"
                   f" {len(addresses) + 2 * models} resources.")
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@click.command("schema")
@click.option("-reference", "--reference", "reference", is_flag=True, help="print docs/specs.md (Markdown) instead")
@click.option("-plan", "--plan", "plan", is_flag=True, help="print the JSON Schema of `plan --json` output")
def schema_command(reference: bool, plan: bool) -> None:
    """Print the JSON Schema of the spec format (for editors and CI checks).

    \b
    Examples:
      cmlplan schema > schemas/spec-v1.json
      cmlplan schema -plan > schemas/plan-v1.json
      cmlplan schema -reference > docs/specs.md
    """
    if reference and plan:
        raise CmlplanError("choose one of -reference and -plan")
    if reference:
        click.echo(render_reference(), nl=False)
    elif plan:
        from ..plan.schema import plan_schema

        click.echo(json.dumps(plan_schema(), indent=2))
    else:
        click.echo(json.dumps(spec_schema(), indent=2))
