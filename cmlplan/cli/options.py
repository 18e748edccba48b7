"""Options shared by several commands (Terraform spelling with one dash, and the --long form)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def chdir_option(func: F) -> F:
    return click.option(
        "-C", "--chdir", "chdir", default=".", show_default=True, metavar="DIR", help="folder of spec files"
    )(func)


def json_option(func: F) -> F:
    return click.option("-json", "--json", "as_json", is_flag=True, help="machine-readable JSON output")(func)


def planning_options(func: F) -> F:
    func = click.option(
        "-refresh", "--refresh", "refresh", type=click.BOOL, default=True, show_default=True,
        help="read the live world (false: trust the state)",
    )(func)
    func = click.option(
        "-target", "--target", "targets", multiple=True, metavar="ADDR",
        help="only this resource and what it depends on (repeatable)",
    )(func)
    func = click.option(
        "-replace", "--replace", "replace", multiple=True, metavar="ADDR",
        help="replace this resource even if unchanged; model.<p>/<m>.access_key regenerates a key",
    )(func)
    return func
