"""Text and Markdown renderings of a plan: symbols, summary, masked secrets, colour."""

from __future__ import annotations

import io

import pytest

from cmlplan.plan import Action, ActionReason, Drift, Plan, ResourceChange, render_markdown, render_text
from cmlplan.plan.style import color_enabled

HASH = "9f" * 32


def _change(address: str, kind: str, action: Action, reason: ActionReason, before, after, **extra) -> ResourceChange:
    return ResourceChange(address=address, kind=kind, action=action, reason=reason, before=before, after=after, **extra)


@pytest.fixture
def plan() -> Plan:
    return Plan(
        changes=(
            _change("project.p", "project", Action.NOOP, ActionReason.NONE, {"description": "d"}, {"description": "d"}),
            _change(
                "apikey.ci", "apikey", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None,
                {"user": "alice", "key_hash": HASH, "key_fingerprint": "abcd1234"},
            ),
            _change(
                "model.p/m", "model", Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED,
                {"description": "old", "access_key_hash": HASH, "name": "m"},
                {"description": "new", "access_key_hash": HASH, "name": "m"},
            ),
            _change(
                "build.p/m#2", "build", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW_BUILD, None, {"hash": "h2"},
                notes=("files: ~m.py (3 -> 4 lines)",),
            ),
            _change(
                "deployment.p/m", "deployment", Action.CREATE_THEN_DELETE, ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED,
                {"build": 1, "replicas": 2}, {"build": 2, "replicas": 2}, replace_paths=("build",),
            ),
            _change(
                "proxy.default", "proxy", Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE,
                {"port": 1}, {"port": 2}, replace_paths=("port",),
            ),
            _change("deployment.p/old", "deployment", Action.DELETE, ActionReason.DELETE_BECAUSE_NO_SPEC, {"replicas": 1}, None),
        ),
        drift=(Drift("model.p/m", "model", {"description": "old", "access_key_hash": HASH}, {"description": "edited", "access_key_hash": HASH + "0"}),),
    )


def _line_starting(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_symbols_per_action(plan: Plan) -> None:
    text = render_text(plan)
    assert _line_starting(text, "  + apikey.ci")
    assert _line_starting(text, "  ~ model.p/m")
    assert _line_starting(text, "  +/- deployment.p/m")
    assert _line_starting(text, "  -/+ proxy.default")
    assert _line_starting(text, "  - deployment.p/old")
    assert "project.p" not in text  # no-ops are not listed


def test_reasons_notes_and_forced_paths(plan: Plan) -> None:
    text = render_text(plan)
    assert "# deployment.p/m will be replaced (the new one is created before the old one is destroyed), because it serves a new build" in text
    assert "~ build = 1 -> 2  # forces replacement" in text
    assert "~ port = 1 -> 2  # forces replacement" in text
    assert "(1 unchanged attribute hidden)" in text
    assert "# files: ~m.py (3 -> 4 lines)" in text
    assert '~ description = "old" -> "new"' in text


def test_summary_line(plan: Plan) -> None:
    assert render_text(plan).rstrip().splitlines()[-1] == "Plan: 2 to add, 1 to change, 2 to replace, 1 to destroy."


def test_sensitive_values_are_masked(plan: Plan) -> None:
    text = render_text(plan) + render_markdown(plan)
    assert HASH not in text and "abcd1234" not in text
    assert "+ key_hash = (sensitive value)" in text
    assert "+ key_fingerprint = (sensitive value)" in text


def test_drift_section(plan: Plan) -> None:
    text = render_text(plan)
    assert text.startswith("Changed outside cmlplan")
    assert (
        "# model.p/m has changed\n      ~ access_key_hash = (sensitive value) -> (sensitive value)\n"
        '      ~ description = "old" -> "edited"'
    ) in text  # a changed secret shows, masked, as Terraform shows it
    assert HASH not in text


def test_no_changes() -> None:
    text = render_text(Plan(changes=()))
    assert text == "No changes. The live world matches the specs.\n"
    assert "**No changes.**" in render_markdown(Plan(changes=()))


def test_colour_only_when_asked(plan: Plan) -> None:
    assert "\x1b[" not in render_text(plan, color=False)
    assert "\x1b[32m+\x1b[0m apikey.ci" in render_text(plan, color=True)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_color_enabled_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_enabled(_Tty()) is True
    assert color_enabled(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert color_enabled(_Tty()) is False
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert color_enabled(_Tty()) is False  # NO_COLOR wins
    monkeypatch.delenv("NO_COLOR")
    assert color_enabled(io.StringIO()) is True


def test_markdown_flags_destroys_and_replaces_at_the_top(plan: Plan) -> None:
    text = render_markdown(plan)
    top, _, rest = text.partition("#### Changes")
    assert "**Plan: 2 to add, 1 to change, 2 to replace, 1 to destroy.**" in top
    assert "> **1 to destroy and 2 to replace:**" in top
    assert "> - `-` `deployment.p/old` will be destroyed, because it is no longer in the specs" in top
    assert "> - `+/-` `deployment.p/m` will be replaced" in top
    assert "#### Changed outside cmlplan (1)" in top
    assert rest.count("<details><summary>") == 6 and rest.count("</details>") == 6


def test_markdown_masks_secrets_and_escapes_html(plan: Plan) -> None:
    text = render_markdown(plan)
    assert "(sensitive value)" in text
    for change in plan.changes:
        for value in (change.after or {}).values():
            if isinstance(value, str) and value.startswith("sha256:"):
                assert value not in text
    hostile = Plan(changes=(ResourceChange("project.<b>x</b>", "project", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None, {"a": "```"}),))
    out = render_markdown(hostile)
    assert "<b>x</b>" not in out.split("```diff")[0].replace("`project.<b>x</b>`", "") and "&lt;b&gt;" in out
    assert out.count("```") == 2, "a value must not close the code block"


def test_markdown_truncates_long_diffs_with_a_note() -> None:
    after = {f"key_{n:03d}": n for n in range(100)}
    big = Plan(changes=(ResourceChange("project.big", "project", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None, after),))
    text = render_markdown(big)
    assert "key_039" in text and "key_040" not in text
    assert "_60 more lines not shown; run `cmlplan plan` for the whole diff._" in text
    long_value = Plan(changes=(ResourceChange("project.long", "project", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None, {"d": "x" * 5000}),))
    assert max(len(line) for line in render_markdown(long_value).splitlines()) <= 200


def test_markdown_no_changes() -> None:
    text = render_markdown(Plan(changes=()))
    assert "**No changes.**" in text and "<details>" not in text


def test_a_computed_list_collapses_to_a_count_and_the_real_change_shows() -> None:
    processes = [{"name": f"r.p.m.d1.{i}", "pid": 100 + i, "url": f"http://127.0.0.1:{9000 + i}"} for i in range(3)]
    before = {"replicas": 3, "processes": processes, "cpu": 1}
    after = {"replicas": 5, "processes": "(known after apply)", "cpu": 1}
    scaled = Plan(changes=(ResourceChange("deployment.p/m", "deployment", Action.UPDATE, ActionReason.UPDATE_BECAUSE_SPEC_CHANGED, before, after),))
    text = render_text(scaled)
    assert "~ processes = (3 items) -> (known after apply)" in text
    assert "~ replicas = 3 -> 5" in text
    assert "pid" not in text and "127.0.0.1" not in text
    assert "processes = (3 items)" in render_markdown(scaled)
