"""`cmlplan models`, `cmlplan history ADDR` and `cmlplan lineage [ADDR]`: read from the state."""

from __future__ import annotations

import json
from typing import Any

import click

from ..engine.catalog import history_rows, model_rows
from ..engine.lineage import lineage_of, render_dot, render_text
from ..engine.workspace import Workspace
from .options import chdir_option, json_option


@click.command("models")
@chdir_option
@json_option
def models_command(chdir: str, as_json: bool) -> None:
    """Every model in the state: project, source, build, deployment, replicas, status, last apply.

    \b
    Examples:
      cmlplan models
      cmlplan models --json
    """
    rows = model_rows(Workspace.open(chdir).read_state())
    if as_json:
        click.echo(json.dumps({"models": rows}, indent=2))
        return
    if not rows:
        click.echo("No models in the state yet.")
        return
    header = ("MODEL", "SOURCE", "BUILD", "DEPLOYMENT", "REPLICAS", "STATUS", "APPLIED BY", "APPLIED AT")
    table = [header] + [
        (
            f"{r['project']}/{r['name']}",
            r["source"],
            _dash(r["build"]),
            _dash(r["deployment_id"]),
            f"{r['replicas']['running']}/{_dash(r['replicas']['wanted'])}",
            r["status"],
            _dash(r["applied_by"]),
            _dash(r["applied_at"]),
        )
        for r in rows
    ]
    click.echo(_table(table))


@click.command("history")
@click.argument("address")
@chdir_option
@json_option
def history_command(address: str, chdir: str, as_json: bool) -> None:
    """Every apply that changed ADDR: deployment id, build, deployed and stopped at, by whom, what changed.

    A model address includes its deployment and builds.

    \b
    Examples:
      cmlplan history model.iris/petal-width
      cmlplan history deployment.iris/petal-width --json
    """
    rows = history_rows(Workspace.open(chdir).read_state(), address)
    if as_json:
        click.echo(json.dumps({"address": address, "history": rows}, indent=2))
        return
    if not rows:
        click.echo(f"No recorded applies for {address}.")
        return
    header = ("AT", "ADDRESS", "ACTION", "DEPLOYMENT", "BUILD", "VERSION", "STOPPED AT", "BY", "CHANGED")
    table = [header] + [
        (
            r["at"],
            r["address"],
            r["action"],
            _dash(r["deployment_id"]),
            _dash(r["build"]),
            _dash((r.get("registered") or {}).get("version")),
            _dash(r["stopped_at"]),
            r["by"],
            ", ".join(r["changed"]) or "-",
        )
        for r in rows
    ]
    click.echo(_table(table))


@click.command("lineage")
@click.argument("address", required=False)
@click.option(
    "-format", "--format", "fmt", type=click.Choice(["text", "dot", "json"]), default="text", show_default=True,
    help="text, Graphviz dot, or JSON",
)
@chdir_option
@json_option
def lineage_command(address: str | None, fmt: str, chdir: str, as_json: bool) -> None:
    """Training data -> run -> registered version -> build -> deployment -> proxy route.

    \b
    Examples:
      cmlplan lineage
      cmlplan lineage model.iris/petal-width -format dot | dot -Tsvg > lineage.svg
    """
    graph = lineage_of(Workspace.open(chdir).read_state(), address)
    if as_json or fmt == "json":
        click.echo(json.dumps(graph.to_dict(), indent=2))
    elif fmt == "dot":
        click.echo(render_dot(graph), nl=False)
    else:
        click.echo(render_text(graph), nl=False)


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
