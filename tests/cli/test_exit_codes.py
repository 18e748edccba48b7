"""Exit codes a job can trust: usage errors exit 1 with one line, so only real changes exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    (["plan", "--bogus"], "Error: cmlplan plan: No such option '--bogus'"),
    (["plan", "-detailed-exitcode", "-bogus"], "Error: cmlplan plan: No such option"),
    (["bogus"], "Error: cmlplan: No such command 'bogus'"),
    (["apply", "-parallelism", "x"], "Error: cmlplan apply: Invalid value for '-parallelism'"),
    (["state", "show"], "Error: cmlplan state show: Missing argument 'ADDRESS'"),
]


@pytest.mark.parametrize(("args", "start"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_usage_errors_exit_1_with_one_line(args: list[str], start: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-m", "cmlplan.cli.main", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr
    assert lines[0].endswith("--help)") and done.stdout == ""
