"""The `cmlplan` command: parse, call the engine, render. No logic of its own lives here."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CmlplanError
from .apply_cmd import apply_command, destroy_command
from .call_cmd import call_command
from .catalog_cmd import history_command, lineage_command, models_command
from .gc_cmd import gc_command
from .inspect_cmd import output_command, show_command
from .logs_cmd import logs_command
from .metrics_cmd import metrics_command
from .plan_cmd import plan_command
from .restart_cmd import restart_command
from .spec_cmd import schema_command, validate_command
from .state_cmd import force_unlock_command, state_group

CONTEXT = {"help_option_names": ["-h", "--help", "-help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-version", "--version", prog_name="cmlplan")
def cli() -> None:
    """Plan and apply Python model deployments declaratively, the CML model lifecycle as code.

    \b
    Typical flow, in a folder of spec files:
      cmlplan validate
      cmlplan plan -out plan.json
      cmlplan apply plan.json
      cmlplan call model.iris/petal-width
    """


for command in (
    validate_command,
    plan_command,
    apply_command,
    destroy_command,
    show_command,
    output_command,
    call_command,
    logs_command,
    restart_command,
    metrics_command,
    gc_command,
    models_command,
    history_command,
    lineage_command,
    schema_command,
    force_unlock_command,
    state_group,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit 1; bugs keep their traceback.

    Usage errors (an unknown flag or command, a bad option value) exit 1 too, as Terraform's do:
    click's 2 would read as "changes present" to a ``plan -detailed-exitcode`` job.
    """
    try:
        code = cli.main(args=argv, prog_name="cmlplan", standalone_mode=False)
    except CmlplanError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"Error: {line}", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "cmlplan"
        message = " ".join(exc.format_message().split())
        click.echo(f"Error: {command}: {message} (see {command} --help)", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
