"""examples/ci: the workflow files parse and every cmlplan command they run parses as the CLI's.

So renaming a flag or a command breaks this test, not a team's CI.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cmlplan.cli.main import cli

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
_SHELL = {">", ">>", "|", "||", "&&", ";", "2>&1"}


def _strings(node: Any, key: str) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in ([v] if k == key and isinstance(v, str) else _strings(v, key))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item, key)]
    return []


def _commands(script: str) -> list[list[str]]:
    """Every ``cmlplan ...`` invocation in a shell script, cut at redirections and pipes."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"(?:^\s*|[;&|(]\s*)cmlplan\s+([^\n]*)", line):
            words = shlex.split(match.group(1), comments=True)
            cut = next((i for i, w in enumerate(words) if w in _SHELL or w.startswith(">")), len(words))
            found.append(words[:cut])
    return found


def _all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name in ("cmlplan.yml", "drift.yml"):
        document = yaml.safe_load((CI / name).read_text())
        assert document["jobs"], name
        found += [(name, words) for script in _strings(document, "run") for words in _commands(script)]
    hooks = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())
    entries = _strings(hooks, "entry")
    assert entries
    found += [("pre-commit-config.yaml", words) for entry in entries for words in _commands(entry)]
    return found


def test_the_examples_run_the_three_workflows() -> None:
    commands = [" ".join(words) for _, words in _all_commands()]
    assert any(c.startswith("plan ") and "-format markdown" in c and "-out plan.json" in c for c in commands)
    assert any(c.startswith("apply ") and c.endswith("plan.json --json") for c in commands)
    assert any(c.startswith("plan ") and "-detailed-exitcode -refresh-only --json" in c for c in commands)
    assert any(c.startswith("validate") for c in commands)


@pytest.mark.parametrize(("source", "words"), _all_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_command_parses(source: str, words: list[str]) -> None:
    assert isinstance(cli, click.Group)
    command = cli.commands.get(words[0])
    assert command is not None, f"{source}: cmlplan {words[0]} is not a command"
    try:
        command.make_context(f"cmlplan {words[0]}", list(words[1:]))
    except click.UsageError as exc:
        pytest.fail(f"{source}: cmlplan {' '.join(words)}: {exc.format_message()}")


def test_the_drift_job_names_each_drifted_address() -> None:
    script = "\n".join(_strings(yaml.safe_load((CI / "drift.yml").read_text()), "run"))
    assert ".resource_drift[]" in script and "exit \"$code\"" in script


@pytest.mark.parametrize("name", ["cmlplan.yml", "drift.yml"])
def test_every_job_gets_the_state_and_the_fingerprint_key(name: str) -> None:
    from cmlplan.engine.keys import FINGERPRINT_KEY_ENV

    env = yaml.safe_load((CI / name).read_text())["env"]
    assert env["CMLPLAN_STATE_DSN"] == "${{ secrets.CMLPLAN_STATE_DSN }}"
    assert env[FINGERPRINT_KEY_ENV] == "${{ secrets.CMLPLAN_FINGERPRINT_KEY }}"
