"""A state write that fails in the middle of a real apply: the disk is full, or read-only.

State lives on a 256 KiB tmpfs (``mount`` needs root; the test skips cleanly otherwise). The apply is
paused while the build runs (after project and model were saved), the fault is injected, and the
build's state write fails. Apply must stop (nothing new starts, since it could not be recorded),
exit non-zero with an error saying the state write failed and the previous state is intact, and
leave state.json at the previous serial. Once the fault is gone, apply converges.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import EXAMPLES, fault_workspace, kill_group

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full (bounded: the tmpfs is small)."""
    filler = folder / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        for _ in range(1024):
            try:
                handle.write(chunk)
            except OSError:
                break
        else:
            raise AssertionError("the tmpfs never filled up")
    return filler


@pytest.mark.parametrize("fault", ["disk-full", "read-only"])
def test_state_write_failure_stops_apply_and_keeps_previous_state(tmp_path: Path, fault: str) -> None:
    with small_tmpfs(tmp_path / "statefs") as statefs, fault_workspace(
        EXAMPLES / "add-numbers", tmp_path / "add-numbers"
    ) as ws:
        ws.state_file = statefs / "state.json"
        ws.replace_in_spec("provider: local", f"provider: local\n  state: {{path: {ws.state_file}}}")
        filler: Path | None = None
        process, lines = ws.run_until_line(r"^build\.numbers/add#1: Creating", "apply", "-auto-approve")
        try:
            before = ws.state()
            assert before is not None and before.serial == 2
            assert sorted(before.resources) == ["model.numbers/add", "project.numbers"]
            previous = ws.state_path.read_bytes()
            journal = ws.state_path.with_name("state.json.journal")
            previous_journal = journal.read_bytes()
            if fault == "disk-full":
                filler = fill(statefs)
            else:
                subprocess.run(["mount", "-o", "remount,ro", str(statefs)], check=True, timeout=30)
            ws.resume()
            output, _ = process.communicate(timeout=180)
        finally:
            kill_group(process)
        output = "\n".join(lines) + "\n" + output
        reason = "No space left on device" if fault == "disk-full" else "Read-only file system"
        assert process.returncode == 1, output
        assert f"writing state file {ws.state_path} failed ({reason}); the previous state is intact" in output, output
        assert "Traceback" not in output, output
        if fault == "read-only":
            assert f"cannot remove the state lock {ws.lock_path} (Read-only file system)" in output, output
        assert "The state write failed" in output and "State is saved" not in output, output
        # nothing started after the failed write: the deployment and the proxy were not created
        assert "deployment.numbers/add: Creating" not in output and "proxy.default: Creating" not in output, output
        assert not [n for n in ws.programs_by_name() if n.startswith(("r.", "cmlplan-proxy"))]
        assert ws.state_path.read_bytes() == previous
        assert journal.read_bytes() == previous_journal, "the failed write must leave the journal as it was"
        assert ws.state().serial == 2

        # the fault goes away: apply converges (the lock may remain on a read-only disk)
        if fault == "disk-full":
            assert filler is not None
            filler.unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(statefs)], check=True, timeout=30)
            if ws.lock_path.exists():
                ws.cli("force-unlock", __import__("json").loads(ws.lock_path.read_text())["id"])
        assert not ws.lock_path.exists()
        ws.apply()
        assert ws.cli("plan", "-detailed-exitcode", check=False).returncode == 0
        ws.assert_no_orphans()
        assert os.path.getsize(ws.state_path) > 0
